//! `switchyard pii erase <subject>`: crypto-shreds one data subject's
//! personal data (a deletion request, a partner decommission) and prints
//! the attestation it wrote to the audit log.
//!
//! No key-encryption key is needed: destroying the subject's wrapped data
//! key is what makes every sealed copy unreadable, backups included.
//!
//! `switchyard pii rewrap --config <orchestrator config>`: wraps every
//! subject's data key under the first of the config's `pii_keys`, so an
//! older key-encryption key can be taken off the list afterwards.

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
    /// Wrap every data key under the first of `pii_keys` (data unchanged)
    /// and record a `pii_rewrapped` audit entry; safe beside a running
    /// orchestrator and safe to repeat.
    Rewrap {
        /// The onboarding orchestrator's config: its `pii_keys` (new key
        /// first, old ones after) and, without --database-url, its store.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Who asked (ticket or operator), recorded as the entry's actor.
        #[arg(long, default_value = "switchyard-cli")]
        actor: String,
    },
}

pub(crate) async fn run(args: PiiArgs) -> anyhow::Result<()> {
    if let PiiAction::Rewrap { config, actor } = &args.action {
        let config = switchyard_onboarding::OrchestratorConfig::load(config)?;
        let url = args.database_url.as_deref().unwrap_or(&config.database_url);
        let store = Store::connect(url).await.context("store")?;
        let pii = switchyard_onboarding::pii::Pii::from_config(&store, &config.pii_keys).await.context("pii_keys")?;
        let done = pii.rewrap_all(&store, actor).await.context("rewrap")?;
        println!(
            "{} subject(s): {} rewrapped under {}, {} already were, {} changed meanwhile; audit entry pii_rewrapped by {actor}",
            done.subjects, done.rewrapped, done.key_id, done.already, done.changed_meanwhile
        );
        if done.not_opened > 0 {
            anyhow::bail!("{} data key(s) are wrapped under a key not in pii_keys and were left as they are; keep that key listed", done.not_opened);
        }
        return Ok(());
    }
    let url = args.database_url.as_deref().context("--database-url (or DATABASE_URL) is required")?;
    let store = Store::connect(url).await.context("store")?;
    let keys = PiiKeys::open(&store).await.context("store")?;
    match args.action {
        PiiAction::Rewrap { .. } => {}
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
