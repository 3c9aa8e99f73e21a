//! `switchyard pii erase <subject>`: crypto-shreds one data subject's
//! personal data (a deletion request, a partner decommission) and prints
//! the attestation it wrote to the audit log.
//!
//! No key-encryption key is needed: destroying the subject's wrapped data
//! key is what makes every sealed copy unreadable, backups included.

use anyhow::Context;
use switchyard_store::pii::PiiKeys;
use switchyard_store::Store;

#[derive(clap::Args)]
pub(crate) struct PiiArgs {
    #[command(subcommand)]
    action: PiiAction,
    /// The store holding the subject's data.
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(clap::Subcommand)]
enum PiiAction {
    /// Destroy the subject's data key, blank their flows and outbox
    /// payloads, and record a `pii_erased` audit entry. The audit trail's
    /// other entries (ids, states, reasons) stay.
    Erase {
        /// The subject id (core banking's customer id).
        subject: String,
        /// Who asked (ticket or operator), recorded as the entry's actor.
        #[arg(long, default_value = "switchyard-cli")]
        actor: String,
    },
}

pub(crate) async fn run(args: PiiArgs) -> anyhow::Result<()> {
    let url = args.database_url.as_deref().context("--database-url (or DATABASE_URL) is required")?;
    let store = Store::connect(url).await.context("store")?;
    let keys = PiiKeys::open(&store).await.context("store")?;
    match args.action {
        PiiAction::Erase { subject, actor } => {
            let done = keys.erase(&subject, &actor).await.context("erase")?;
            println!(
                "erased {subject}: data key {}, {} flow(s) blanked, {} outbox message(s) blanked; audit entry pii_erased by {actor}",
                if done.key_destroyed { "destroyed" } else { "absent" },
                done.flows,
                done.outbox_messages
            );
        }
    }
    Ok(())
}
