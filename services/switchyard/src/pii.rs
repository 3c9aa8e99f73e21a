//! `switchyard pii erase [<applicant>...] [--payout <id>...] [--card <id>...]`:
//! crypto-shreds data subjects' personal data (a deletion request, a partner
//! decommission) and prints the attestation each wrote to the audit log. A
//! bare id is an applicant (core banking's customer id), as before; payouts
//! and cards are named by flag, so an id is never guessed across domains.
//!
//! No key-encryption key is needed: destroying the subject's wrapped data
//! key is what makes every sealed copy unreadable, backups included.
//!
//! `switchyard pii rewrap --config <orchestrator config>`: wraps every
//! subject's data key under the first of the config's `pii_keys`, so an
//! older key-encryption key can be taken off the list afterwards.

use anyhow::Context;
use switchyard_store::pii::{Erasure, PiiKeys};
use switchyard_store::pii_erase::Subject;
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
    /// Destroy each subject's data key, blank the clear copies of their
    /// data (onboarding flows and outbox; the kept payout command; vendor
    /// texts in stored outcomes and audit entries), and record one
    /// `pii_erased` audit entry per subject. Ids, amounts, statuses and
    /// timestamps stay, so reconciliation and the scorecard still work.
    #[command(arg_required_else_help = true)]
    Erase {
        /// Applicants, by core banking's customer id.
        subject: Vec<String>,
        /// Payouts whose beneficiary's data to erase, by payout id.
        #[arg(long = "payout", value_name = "PAYOUT_ID")]
        payouts: Vec<String>,
        /// Cards whose cardholder's data to erase, by card id.
        #[arg(long = "card", value_name = "CARD_ID")]
        cards: Vec<String>,
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
        PiiAction::Erase { subject, payouts, cards, actor } => {
            for s in named(subject, payouts, cards)? {
                // One transaction and one attestation per subject: a failure
                // leaves the ones before it erased and says which failed.
                let done = keys.erase_subject(&s, &actor).await.with_context(|| format!("erase {} {}", s.kind(), s.id()))?;
                println!("{}", said(&s, &done, &actor));
            }
        }
    }
    Ok(())
}

/// The subjects an erase names, applicants first; none is an error, not
/// a silent no-op (clap's help covers a bare `erase`, but not one whose
/// only argument came from the environment, such as DATABASE_URL).
fn named(applicants: Vec<String>, payouts: Vec<String>, cards: Vec<String>) -> anyhow::Result<Vec<Subject>> {
    if applicants.is_empty() && payouts.is_empty() && cards.is_empty() {
        anyhow::bail!("name at least one subject: an applicant id, --payout <id> or --card <id>");
    }
    Ok(applicants.into_iter().map(Subject::Applicant).chain(payouts.into_iter().map(Subject::Payout)).chain(cards.into_iter().map(Subject::Card)).collect())
}

/// What an erasure did, in one line (counts only: the ids are the operator's own input).
fn said(subject: &Subject, done: &Erasure, actor: &str) -> String {
    let key = if done.key_destroyed { "destroyed" } else { "absent" };
    let texts = format!("{} vendor text(s) in the audit log and {} in stored outcomes replaced", done.audit_texts, done.outcome_texts);
    match subject {
        Subject::Applicant(id) => format!(
            "erased {id}: data key {key}, {} flow(s) blanked, {} outbox message(s) blanked, {texts}, {} screening view(s) redacted; audit entry pii_erased by {actor}",
            done.flows, done.outbox_messages, done.gateway_views
        ),
        Subject::Payout(id) => {
            format!("erased payout {id}: data key {key}, {} kept command(s) blanked, {texts}; audit entry pii_erased by {actor}", done.commands)
        }
        Subject::Card(id) => format!("erased card {id}: data key {key}, {texts}; audit entry pii_erased by {actor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pii: PiiArgs,
    }

    fn erase(args: &[&str]) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
        let cli = Cli::try_parse_from(["pii", "erase"].iter().chain(args)).ok()?;
        match cli.pii.action {
            PiiAction::Erase { subject, payouts, cards, .. } => Some((subject, payouts, cards)),
            PiiAction::Rewrap { .. } => None,
        }
    }

    #[test]
    fn erase_takes_applicants_as_before_and_payouts_and_cards_by_flag() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(erase(&["app-1", "--actor", "t-1"]), Some((v(&["app-1"]), v(&[]), v(&[]))), "the form before payouts");
        assert_eq!(erase(&["app-1", "--payout", "po-1", "--payout", "po-2", "--card", "c-1"]), Some((v(&["app-1"]), v(&["po-1", "po-2"]), v(&["c-1"]))));
        assert_eq!(erase(&["--card", "c-9"]), Some((v(&[]), v(&[]), v(&["c-9"]))));
        // Nothing named: clap's help, or (DATABASE_URL set, so clap sees an
        // argument) an error before anything is erased; never a silent no-op.
        if let Some((a, p, c)) = erase(&[]) {
            assert!(named(a, p, c).is_err(), "nothing named must be refused");
        }
        assert!(named(Vec::new(), Vec::new(), Vec::new()).is_err_and(|e| e.to_string().contains("--payout")));
        assert_eq!(named(v(&["a"]), v(&["p"]), Vec::new()).expect("named").len(), 2);
        let done = Erasure { kind: "payout", key_destroyed: true, commands: 1, audit_texts: 2, ..Erasure::default() };
        let line = said(&Subject::Payout("po-1".into()), &done, "dpo");
        assert_eq!(line, "erased payout po-1: data key destroyed, 1 kept command(s) blanked, 2 vendor text(s) in the audit log and 0 in stored outcomes replaced; audit entry pii_erased by dpo");
    }
}
