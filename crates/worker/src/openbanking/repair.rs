//! A COMPLETE_CONSENT whose public token comes back spent.
//!
//! A Plaid public token is single use, and no Plaid endpoint returns an
//! item's access token again. So when an exchange's answer is lost (a
//! connection reset after Plaid executed it) and the retried exchange gets
//! `INVALID_PUBLIC_TOKEN`, the item exists at Plaid and its access token is
//! gone for good. Nothing we can call gets it back: the consent is parked
//! for a person, never answered CONSENT_ACTIVE (there is no token to use)
//! and never with a generic error.
//!
//! What identifies the lost item is looked up with `/link/token/get`:
//! `link_sessions[].results.item_add_results[]` lists, per session, the
//! public tokens Link handed out with the institution and account ids.
//! Plaid's definition (`LinkSessionItemAddResult`) carries **no** `item_id`,
//! so the repair names the Link session, the institution and the account
//! ids, which Plaid's dashboard and support resolve to the item.
//!
//! The parked answer: a FAILED outcome with error class `manual_repair`
//! saying what happened and what to do (the product asks the user to link
//! again; ops have the orphaned item removed at Plaid), stored with the
//! consent so a redelivery answers the same without calling Plaid; an
//! audit row `openbanking_consent_parked`; and the command in the DLQ with
//! the same reason (`switchyard dlq`, `switchyard trace`).
//!
//! A spent token with no earlier attempt whose answer was unknown, that no
//! session of the hand-off produced, is the product's mistake (a stale or
//! foreign token): REJECTED-like FAILED, class `permanent`, no repair.

use super::consent::Held;
use super::{OpenBankingHandler, Stop, Turn};
use switchyard_adapters::openbanking::HandoffResult;
use switchyard_adapters::Secret;
use switchyard_canonical::openbanking_outcome::{OpenBankingKind, OpenBankingOutcome};
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
use switchyard_store::openbanking::ConsentRow;
use switchyard_store::AuditEntry;

/// The message every parked consent's outcome starts with (ops grep for it).
pub(super) const PARKED: &str = "consent parked for manual repair";

/// What the look-up of the hand-off found.
enum Found {
    Session(HandoffResult),
    NoSession,
    /// The look-up itself failed or could not be made.
    Unknown(String),
}

impl OpenBankingHandler {
    /// The exchange of `public` answered `code` (spent or invalid).
    pub(super) async fn spent(&self, turn: &mut Turn<'_>, held: Held, public: &str, code: &str) -> Result<OpenBankingOutcome, Stop> {
        let provider = held.row.provider.clone();
        // An earlier exchange of this token whose answer we never read: in
        // this delivery (retried in place) or in an earlier one (the claim
        // was taken over).
        let earlier_unknown = turn.attempts > 1 || turn.lease.epoch > 1;
        let found = match last_handoff(&held.row) {
            Some(link_token) => {
                let secret = Secret::new(public.to_owned());
                let looked = self.call(turn, &provider, "handoff_lookup", |p, ctx| {
                    let (link_token, secret) = (link_token.clone(), secret.clone());
                    async move { p.handoff_result(&ctx, &link_token, &secret).await }
                });
                match looked.await? {
                    Ok(Some(session)) => Found::Session(session),
                    Ok(None) => Found::NoSession,
                    Err(e) => Found::Unknown(e.to_string()),
                }
            }
            None => Found::Unknown("the consent holds no hand-off to look up".into()),
        };
        if matches!(found, Found::NoSession) && !earlier_unknown {
            tracing::info!(code, "public token refused on its first exchange and not from this consent's hand-off");
            let mut outcome = self.outcome(turn, OpenBankingKind::Failed, Some(&held));
            outcome.error = Some(OutcomeError {
                class: ErrorClass::Permanent,
                code: ErrorCode::InvalidRequest,
                message: format!("{provider} refused the public token ({code}) and no session of this consent's hand-off produced it: send CREATE_CONSENT for a new hand-off"),
            });
            return Ok(outcome);
        }
        let message = parked_message(&provider, code, &found);
        tracing::warn!(code, earlier_unknown, "{PARKED}: the public token is spent and its access token cannot be had again");
        // switchyard_failures_total{class="manual_repair"}: the alert ops act on.
        self.metrics.failure(ErrorClass::ManualRepair.as_str());
        let detail = serde_json::json!({
            "provider": provider,
            "code": code,
            "earlier_attempt_unknown": earlier_unknown,
            "attempts": turn.attempts,
            "lease_epoch": turn.lease.epoch,
            "link_session_id": match &found { Found::Session(s) => Some(s.session_id.as_str()), _ => None },
            "institution_id": match &found { Found::Session(s) => s.institution_id.as_deref(), _ => None },
            "account_ids": match &found { Found::Session(s) => s.account_ids.clone(), _ => Vec::new() },
            "lookup": match &found { Found::Session(_) => "found", Found::NoSession => "no_session", Found::Unknown(_) => "failed" },
        })
        .to_string();
        let entry = AuditEntry {
            actor: "openbanking-worker",
            action: "openbanking_consent_parked",
            subject_id: &turn.command.consent_id,
            correlation_id: &turn.ctx.correlation_id.0,
            detail: &detail,
        };
        self.store.audit(entry).await?;
        let mut outcome = self.outcome(turn, OpenBankingKind::Failed, Some(&held));
        outcome.error = Some(OutcomeError { class: ErrorClass::ManualRepair, code: ErrorCode::Unknown, message });
        // Stored with the consent (its state unchanged): a redelivery of the
        // command answers this without calling Plaid.
        let from = held.consent.state;
        self.commit(turn, held, from, outcome, |_| {}).await
    }
}

/// Whether an outcome parks its consent: the command then goes to the DLQ
/// too, with the outcome's message as the reason.
pub(super) fn parked(outcome: &OpenBankingOutcome) -> Option<&str> {
    outcome.error.as_ref().filter(|e| e.class == ErrorClass::ManualRepair && e.message.starts_with(PARKED)).map(|e| e.message.as_str())
}

fn parked_message(provider: &str, code: &str, found: &Found) -> String {
    let what = match found {
        Found::Session(s) => format!(
            "{provider} Link session {} linked an item at institution {} ({}) with accounts [{}]",
            s.session_id,
            s.institution_id.as_deref().unwrap_or("?"),
            s.institution_name.as_deref().unwrap_or("?"),
            s.account_ids.join(", "),
        ),
        Found::NoSession => format!("{provider} reports no Link session result for the token (Link events may be off for this client)"),
        Found::Unknown(why) => format!("the Link session could not be looked up ({why})"),
    };
    format!(
        "{PARKED}: the public token was exchanged by an earlier attempt whose answer was lost ({code} on the retry) and \
         {provider} never returns an item's access token again. {what}. Product: ask the user to link the account again \
         (CREATE_CONSENT under a new consent id). Ops: have {provider} remove the orphaned item of that session"
    )
}

/// The link token of the consent's outstanding hand-off: its last change
/// was the hand-off, whose stored answer carries it (a link token is no
/// credential: the product shows it to the user's browser).
fn last_handoff(row: &ConsentRow) -> Option<String> {
    let applied: serde_json::Value = serde_json::from_str(row.last_outcome.as_deref()?).ok()?;
    applied.pointer("/outcome/handoff/value").and_then(serde_json::Value::as_str).map(str::to_owned)
}
