//! A processor's answer, applied: the card rows to compare-and-set, the
//! events of each real state change and the outcome. Pure; the handler
//! writes the result in one transaction.
//!
//! Versions: a card is created at version 1 (ORDERED, no event); every
//! state it enters and every other event-worthy change takes the next
//! version, which names its event (`<card_id>:<version>`); a command that
//! changes nothing event-worthy still bumps it once, so the compare-and-set
//! fences a concurrent writer either way.

use serde::{Deserialize, Serialize};
use switchyard_adapters::cards::{CardAnswer, DisputeFacts, Provisioning, TokenDecision, TokenFacts};
use switchyard_canonical::card::{event_for, CardAction, CardCommand, CardForm, CardLifecycle, CardState, Observed, WalletTokenWord};
use switchyard_canonical::card_dispute::{CreditMove, DisputeCase, DisputeEffect, DisputeState};
use switchyard_canonical::card_event::{CardEvent, CardEventKind};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus, CardReplacement, ProvisioningResult};
use switchyard_store::cards::{CardEventRow, CardRow};

/// A dispute as the card row keeps it: ours, the processor's id, its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DisputeRef {
    pub dispute_id: String,
    pub reference: String,
    pub state: Option<DisputeState>,
    /// The disputed amount and whether its provisional credit is still
    /// outstanding, for the credit a processor's final word settles. Rows
    /// written before dispute callbacks were applied lack them: such a
    /// dispute still moves, but books no credit (its amount is unknown).
    #[serde(default)]
    pub amount_minor: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub credit_outstanding: bool,
    #[serde(default)]
    pub deadline_at_ms: Option<i64>,
}

pub(super) fn lifecycle_of(row: &CardRow) -> Result<CardLifecycle, String> {
    serde_json::from_str(&row.lifecycle).map_err(|e| format!("card {} has an unreadable lifecycle: {e}", row.card_id))
}

pub(super) fn disputes_of(row: &CardRow) -> Result<Vec<DisputeRef>, String> {
    serde_json::from_str(&row.disputes).map_err(|e| format!("card {} has unreadable disputes: {e}", row.card_id))
}

/// The row that reserves a card id before its issuing call (version 1).
pub(super) fn reservation(card_id: &str, processor: &str, form: CardForm, replaces: Option<String>, issue_key: &str, now_ms: i64) -> Result<CardRow, String> {
    let lifecycle = CardLifecycle::ordered(form, replaces, now_ms);
    Ok(CardRow {
        card_id: card_id.to_owned(),
        processor: processor.to_owned(),
        processor_reference: None,
        last_four: None,
        state: lifecycle.state.as_str().to_owned(),
        lifecycle: serde_json::to_string(&lifecycle).map_err(|e| e.to_string())?,
        version: 1,
        issue_key: issue_key.to_owned(),
        disputes: "[]".to_owned(),
    })
}

/// What one successful command writes and answers.
pub(super) struct Change {
    /// Each row with the version it was read at.
    pub rows: Vec<(CardRow, i64)>,
    pub events: Vec<CardEventRow>,
    pub outcome: CardOutcome,
}

/// One card being changed: its row as read, its lifecycle, and the events
/// its changes publish.
struct Moving {
    read: CardRow,
    next: CardRow,
    lifecycle: CardLifecycle,
    version: i64,
    events: Vec<CardEvent>,
}

impl Moving {
    fn new(read: &CardRow) -> Result<Self, String> {
        Ok(Self { lifecycle: lifecycle_of(read)?, version: read.version, next: read.clone(), read: read.clone(), events: Vec::new() })
    }

    fn event(&mut self, kind: CardEventKind, from: Option<String>, to: Option<String>, now_ms: i64) -> &mut CardEvent {
        self.version += 1;
        self.events.push(CardEvent {
            event_id: format!("{}:{}", self.next.card_id, self.version),
            card_id: self.next.card_id.clone(),
            kind,
            from_state: from,
            to_state: to,
            processor: self.next.processor.clone(),
            processor_reference: self.next.processor_reference.clone(),
            last_four: self.next.last_four.clone(),
            dispute_id: None,
            amount_minor: None,
            currency: None,
            linked_card_id: None,
            notify_cardholder: kind.notifies_cardholder(),
            occurred_at_ms: now_ms,
            published_at_ms: 0,
        });
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    /// The processor says the card is now `to`: one event per state entered.
    fn observe(&mut self, to: CardState, now_ms: i64) -> CallbackResult {
        let mut from = self.lifecycle.state;
        match self.lifecycle.observe(to, now_ms) {
            Observed::Entered(states) => {
                for state in states {
                    if let Some(kind) = event_for(state, from) {
                        self.event(kind, Some(from.as_str().to_owned()), Some(state.as_str().to_owned()), now_ms);
                    }
                    from = state;
                }
                CallbackResult::Changed
            }
            Observed::Unchanged => CallbackResult::Unchanged,
            Observed::Contradiction { from, to } => {
                // No event: the processor and we disagree on the card; the
                // reconciler and ops see it in the audit log.
                tracing::warn!(from = from.as_str(), to = to.as_str(), "processor reports a card state our lifecycle forbids");
                CallbackResult::Contradiction
            }
        }
    }

    fn finish(mut self, correlation_id: &str) -> Result<((CardRow, i64), Vec<CardEventRow>), String> {
        let version = if self.events.is_empty() { self.version + 1 } else { self.version };
        self.next.version = version;
        self.next.state = self.lifecycle.state.as_str().to_owned();
        self.next.lifecycle = serde_json::to_string(&self.lifecycle).map_err(|e| e.to_string())?;
        let events = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(CardEventRow {
                    event_id: e.event_id.clone(),
                    card_id: e.card_id.clone(),
                    seq: self.read.version + 1 + i as i64,
                    payload: serde_json::to_string(e).map_err(|e| e.to_string())?,
                    correlation_id: correlation_id.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(((self.next, self.read.version), events))
    }
}

/// What a processor's word did to the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallbackResult {
    /// At least one state entered: one event each.
    Changed,
    /// A duplicate, late or stale word: nothing to publish.
    Unchanged,
    /// A move the lifecycle forbids: nothing published, audited.
    Contradiction,
}

impl CallbackResult {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CallbackResult::Changed => "changed",
            CallbackResult::Unchanged => "unchanged",
            CallbackResult::Contradiction => "contradiction",
        }
    }
}

/// What one processor callback writes: the card (the next version when it
/// changed; the row as read, same version, when it did not, so the
/// compare-and-set only checks and a command in flight is not disturbed)
/// and the events of the states it entered.
pub(super) struct CallbackChange {
    pub row: CardRow,
    pub read_version: i64,
    pub events: Vec<CardEventRow>,
    pub result: CallbackResult,
}

/// Applies a processor callback saying the card is now `to`, at `at_ms` on
/// the processor's clock, through [`CardLifecycle::observe`].
pub(super) fn callback(card: &CardRow, to: CardState, at_ms: i64, correlation_id: &str) -> Result<CallbackChange, String> {
    let mut moving = Moving::new(card)?;
    let result = moving.observe(to, at_ms);
    if result != CallbackResult::Changed {
        return Ok(CallbackChange { row: card.clone(), read_version: card.version, events: Vec::new(), result });
    }
    let ((row, read_version), events) = moving.finish(correlation_id)?;
    Ok(CallbackChange { row, read_version, events, result })
}

/// Applies a processor's word on a dispute of `card` through
/// [`DisputeCase::apply`]: one DISPUTE_UPDATED per stage entered (a jump
/// over stages we did not see is one change), and on a final word the
/// provisional credit settled once: `MADE_FINAL` (nothing more to book,
/// no amount) when won, `REVERSED` with the negative amount when lost or
/// withdrawn. A repeated, late or earlier stage changes nothing; a
/// terminal dispute reported moving again is a contradiction (audited,
/// nothing published).
pub(super) fn dispute_callback(card: &CardRow, facts: &DisputeFacts, at_ms: i64, correlation_id: &str) -> Result<CallbackChange, String> {
    let unchanged = |result| CallbackChange { row: card.clone(), read_version: card.version, events: Vec::new(), result };
    let mut disputes = disputes_of(card)?;
    let Some(known) = disputes.iter_mut().find(|d| d.reference == facts.dispute_reference) else {
        return Err(format!("card {} holds no dispute with the processor's token of this callback", card.card_id));
    };
    let mut case = DisputeCase {
        dispute_id: known.dispute_id.clone(),
        state: known.state.unwrap_or(DisputeState::Opened),
        amount_minor: known.amount_minor.unwrap_or(0),
        currency: known.currency.clone().unwrap_or_default(),
        deadline_at_ms: known.deadline_at_ms,
        credit_outstanding: known.credit_outstanding && known.amount_minor.is_some(),
    };
    // Neither processor's callback carries a due date (see DisputeFacts).
    let effects = match case.apply(facts.state, None) {
        Ok(effects) if effects.is_empty() => return Ok(unchanged(CallbackResult::Unchanged)),
        Ok(effects) => effects,
        Err(c) => {
            tracing::warn!(from = c.from.as_str(), to = c.to.as_str(), "processor reports a dispute move our dispute machine forbids");
            return Ok(unchanged(CallbackResult::Contradiction));
        }
    };
    let mut moving = Moving::new(card)?;
    for effect in effects {
        let event = match effect {
            DisputeEffect::Entered { from, to, .. } => moving.event(CardEventKind::DisputeUpdated, Some(from.as_str().to_owned()), Some(to.as_str().to_owned()), at_ms),
            DisputeEffect::ProvisionalCredit { movement, amount_minor } => {
                let (label, amount) = match movement {
                    CreditMove::Granted => ("GRANTED", Some(amount_minor)),
                    // The credit stays with the cardholder: nothing to book.
                    CreditMove::MadeFinal => ("MADE_FINAL", None),
                    CreditMove::Reversed => ("REVERSED", Some(-amount_minor)),
                };
                let credit = moving.event(CardEventKind::ProvisionalCredit, None, Some(label.to_owned()), at_ms);
                credit.amount_minor = amount;
                credit.currency = Some(case.currency.clone());
                credit
            }
        };
        event.dispute_id = Some(case.dispute_id.clone());
    }
    known.state = Some(case.state);
    known.deadline_at_ms = case.deadline_at_ms;
    known.credit_outstanding = case.credit_outstanding;
    moving.next.disputes = serde_json::to_string(&disputes).map_err(|e| e.to_string())?;
    let ((row, read_version), events) = moving.finish(correlation_id)?;
    Ok(CallbackChange { row, read_version, events, result: CallbackResult::Changed })
}

/// The processor says the card's shipment came back: one
/// CARD_SHIPPING_RETURNED per card (its state unchanged, named as both
/// `from_state` and `to_state`), nothing for any later word of it.
pub(super) fn shipping_returned(card: &CardRow, at_ms: i64, correlation_id: &str) -> Result<CallbackChange, String> {
    let mut moving = Moving::new(card)?;
    if moving.lifecycle.shipping_returned_at_ms.is_some() {
        return Ok(CallbackChange { row: card.clone(), read_version: card.version, events: Vec::new(), result: CallbackResult::Unchanged });
    }
    moving.lifecycle.shipping_returned_at_ms = Some(at_ms);
    let state = moving.lifecycle.state.as_str().to_owned();
    moving.event(CardEventKind::CardShippingReturned, Some(state.clone()), Some(state), at_ms);
    let ((row, read_version), events) = moving.finish(correlation_id)?;
    Ok(CallbackChange { row, read_version, events, result: CallbackResult::Changed })
}

/// A processor's word on one of the card's wallet tokens: TOKEN_STEP_UP_REQUIRED
/// once per token held for step-up, TOKEN_PROVISIONED once per token, at
/// its approval or at its activation after a step-up (the card's lifecycle
/// keeps the tokens awaiting step-up). A redelivered callback is stopped by
/// its event id before this runs; the same word under another id changes
/// nothing.
pub(super) fn token_decision(card: &CardRow, facts: &TokenFacts, at_ms: i64, correlation_id: &str) -> Result<CallbackChange, String> {
    let mut moving = Moving::new(card)?;
    let word = match facts.decision {
        TokenDecision::Provisioned => WalletTokenWord::Approved,
        TokenDecision::StepUpRequired => WalletTokenWord::StepUpRequired,
        TokenDecision::Activated => WalletTokenWord::Activated,
    };
    let Some(kind) = moving.lifecycle.wallet_token(facts.wallet_token.as_deref(), word) else {
        return Ok(CallbackChange { row: card.clone(), read_version: card.version, events: Vec::new(), result: CallbackResult::Unchanged });
    };
    moving.event(kind, None, None, at_ms);
    let ((row, read_version), events) = moving.finish(correlation_id)?;
    Ok(CallbackChange { row, read_version, events, result: CallbackResult::Changed })
}

/// Applies a successful answer. `card` is the card as read (for ISSUE its
/// reservation), `replacement` the new card id's reservation for REPLACE.
pub(super) fn success(
    command: &CardCommand,
    card: &CardRow,
    replacement: Option<&CardRow>,
    answer: CardAnswer,
    attempts: i32,
    correlation_id: &str,
    now_ms: i64,
) -> Result<Change, String> {
    let mut moving = Moving::new(card)?;
    let mut outcome = CardOutcome::new(command, CardOutcomeStatus::Succeeded);
    let mut new_card = None;
    match command.action {
        CardAction::Issue => {
            let Some(reference) = answer.processor_reference.clone() else {
                return Err("the processor answered the issuance without a card token".into());
            };
            moving.next.processor_reference = Some(reference);
            moving.next.last_four = answer.last_four.clone();
            moving.observe(answer.state.unwrap_or(CardState::Issued), now_ms);
        }
        CardAction::Activate | CardAction::Suspend | CardAction::Reinstate | CardAction::Terminate => {
            let expected = moving.lifecycle.after_success(command.action, None);
            // The processor is the truth about its card; our expectation
            // only fills in when it did not say.
            if let Some(to) = answer.state.or(expected) {
                moving.observe(to, now_ms);
            }
        }
        CardAction::Replace => {
            let (Some(spec), Some(reserved)) = (&command.replace, replacement) else {
                return Err("REPLACE without its replacement card".into());
            };
            let Some(reference) = answer.processor_reference.clone() else {
                return Err("the processor answered the replacement without a card token".into());
            };
            let mut fresh = Moving::new(reserved)?;
            fresh.next.processor_reference = Some(reference);
            fresh.next.last_four = answer.last_four.clone();
            let from = fresh.lifecycle.state;
            fresh.observe(answer.state.unwrap_or(CardState::Issued), now_ms);
            for e in fresh.events.iter_mut() {
                e.linked_card_id = Some(card.card_id.clone());
            }
            if fresh.events.is_empty() {
                tracing::warn!(from = from.as_str(), "replacement card entered no state");
            }
            moving.lifecycle.replaced_by = Some(spec.new_card_id.clone());
            let replaced = moving.event(CardEventKind::CardReplaced, None, None, now_ms);
            replaced.linked_card_id = Some(spec.new_card_id.clone());
            if let Some(to) = moving.lifecycle.after_success(CardAction::Replace, Some(spec.reason)) {
                moving.observe(to, now_ms);
            }
            outcome.replacement = Some(CardReplacement {
                card_id: spec.new_card_id.clone(),
                processor_reference: fresh.next.processor_reference.clone(),
                last_four: fresh.next.last_four.clone(),
                state: Some(fresh.lifecycle.state),
            });
            new_card = Some(fresh);
        }
        CardAction::ProvisionToken => {
            let (result, kind) = match answer.provisioning.clone() {
                Some(Provisioning::Ready { activation_data, encrypted_data, ephemeral_public_key }) => (
                    ProvisioningResult { step_up_required: false, activation_data: Some(activation_data), encrypted_data, ephemeral_public_key },
                    Some(CardEventKind::TokenProvisioned),
                ),
                Some(Provisioning::StepUpRequired) => (
                    ProvisioningResult { step_up_required: true, activation_data: None, encrypted_data: None, ephemeral_public_key: None },
                    Some(CardEventKind::TokenStepUpRequired),
                ),
                // Undecided yet: the decision's callback publishes the event
                // ([`token_decision`]), so a step-up is never first told as
                // a provisioned token.
                Some(Provisioning::Requested { activation_data, encrypted_data, ephemeral_public_key }) => {
                    (ProvisioningResult { step_up_required: false, activation_data: Some(activation_data), encrypted_data, ephemeral_public_key }, None)
                }
                None => return Err("the processor answered the provisioning without a payload".into()),
            };
            if let Some(kind) = kind {
                moving.event(kind, None, None, now_ms);
            }
            outcome.provisioning = Some(result);
        }
        CardAction::OpenDispute => {
            let (Some(spec), Some(reference)) = (&command.dispute, answer.dispute_reference.clone()) else {
                return Err("the processor answered the dispute without its id".into());
            };
            let state = answer.dispute_state.unwrap_or(DisputeState::Opened);
            let (_, effects) = DisputeCase::open(spec.dispute_id.clone(), spec.amount_minor, spec.currency.clone(), None);
            let opened = moving.event(CardEventKind::DisputeUpdated, None, Some(state.as_str().to_owned()), now_ms);
            opened.dispute_id = Some(spec.dispute_id.clone());
            for effect in effects {
                if let DisputeEffect::ProvisionalCredit { amount_minor, .. } = effect {
                    let credit = moving.event(CardEventKind::ProvisionalCredit, None, Some("GRANTED".into()), now_ms);
                    credit.dispute_id = Some(spec.dispute_id.clone());
                    credit.amount_minor = Some(amount_minor);
                    credit.currency = Some(spec.currency.clone());
                }
            }
            let mut disputes = disputes_of(card)?;
            disputes.retain(|d| d.dispute_id != spec.dispute_id);
            disputes.push(DisputeRef {
                dispute_id: spec.dispute_id.clone(),
                reference: reference.clone(),
                state: Some(state),
                amount_minor: Some(spec.amount_minor),
                currency: Some(spec.currency.clone()),
                credit_outstanding: true,
                deadline_at_ms: None,
            });
            moving.next.disputes = serde_json::to_string(&disputes).map_err(|e| e.to_string())?;
            outcome.dispute_id = Some(spec.dispute_id.clone());
            outcome.dispute_reference = Some(reference);
            outcome.dispute_state = Some(state);
        }
        CardAction::SubmitDisputeEvidence => {
            outcome.dispute_id = command.evidence.as_ref().map(|e| e.dispute_id.clone());
            outcome.dispute_reference = answer.dispute_reference.clone();
            outcome.dispute_state = answer.dispute_state;
        }
        // The processor holds the PIN; nothing of the card changes here.
        CardAction::SetPin => {}
    }
    outcome.state = Some(moving.lifecycle.state);
    outcome.provider = Some(moving.next.processor.clone());
    outcome.processor_reference = moving.next.processor_reference.clone();
    outcome.last_four = moving.next.last_four.clone();
    outcome.attempts = attempts;
    outcome.completed_at_ms = now_ms;
    let (row, mut events) = moving.finish(correlation_id)?;
    let mut rows = vec![row];
    if let Some(fresh) = new_card {
        let (row, more) = fresh.finish(correlation_id)?;
        rows.push(row);
        events.extend(more);
    }
    Ok(Change { rows, events, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(action: CardAction) -> CardCommand {
        CardCommand {
            card_id: "card-1".into(),
            idempotency_key: "k".into(),
            action,
            issue: None,
            pin: None,
            replace: None,
            provision: None,
            dispute: None,
            evidence: None,
            reason: None,
            requested_at_ms: 0,
        }
    }

    fn answer(state: Option<CardState>) -> CardAnswer {
        CardAnswer { processor_reference: Some("tok-1".into()), last_four: Some("4242".into()), state, ..CardAnswer::default() }
    }

    #[test]
    fn an_issued_card_gets_its_token_one_event_and_the_next_version() {
        let reserved = reservation("card-1", "lithic", CardForm::Virtual, None, "k", 0).expect("row");
        let change = success(&command(CardAction::Issue), &reserved, None, answer(Some(CardState::Issued)), 1, "c", 5).expect("applies");
        let (row, read_at) = &change.rows[0];
        assert_eq!((row.version, *read_at, row.state.as_str(), row.processor_reference.as_deref()), (2, 1, "ISSUED", Some("tok-1")));
        assert_eq!(change.events.iter().map(|e| (e.event_id.as_str(), e.seq)).collect::<Vec<_>>(), [("card-1:2", 2)]);
        assert_eq!((change.outcome.state, change.outcome.last_four.as_deref()), (Some(CardState::Issued), Some("4242")));
    }

    #[test]
    fn callbacks_publish_once_per_state_entered_and_fill_in_skipped_states() {
        let mut issue = command(CardAction::Issue);
        issue.issue = None;
        let reserved = reservation("card-1", "marqeta", CardForm::Physical, None, "k", 0).expect("row");
        let card = success(&issue, &reserved, None, answer(Some(CardState::Issued)), 1, "c", 5).expect("issue").rows.remove(0).0;
        let again = callback(&card, CardState::Issued, 6, "c").expect("applies");
        assert_eq!((again.result, again.events.len(), again.row.version), (CallbackResult::Unchanged, 0, card.version), "the outcome told it already");
        let delivered = callback(&card, CardState::PendingActivation, 7, "c").expect("applies");
        assert_eq!(delivered.result, CallbackResult::Changed);
        assert_eq!(delivered.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["card-1:3", "card-1:4"], "shipped filled in, then pending activation");
        let late = callback(&delivered.row, CardState::Shipped, 8, "c").expect("applies");
        assert_eq!((late.result, late.events.len()), (CallbackResult::Unchanged, 0), "shipped after delivered is late");
        let closed = callback(&delivered.row, CardState::Terminated, 9, "c").expect("applies").row;
        assert_eq!(callback(&closed, CardState::Active, 10, "c").expect("applies").result, CallbackResult::Contradiction);
    }

    #[test]
    fn dispute_callbacks_publish_once_per_stage_and_settle_the_credit_once() {
        use switchyard_canonical::card::DisputeSpec;
        use switchyard_canonical::card_dispute::DisputeReason;
        let mut card = reservation("card-1", "marqeta", CardForm::Virtual, None, "k", 0).expect("row");
        card = success(&command(CardAction::Issue), &card, None, answer(None), 1, "c", 5).expect("issue").rows.remove(0).0;
        let mut open = command(CardAction::OpenDispute);
        open.dispute = Some(DisputeSpec { dispute_id: "dsp-1".into(), transaction_ref: "t".into(), amount_minor: 1_250, currency: "USD".into(), reason: DisputeReason::Fraud });
        let opened = CardAnswer { dispute_reference: Some("cb-1".into()), dispute_state: Some(DisputeState::Submitted), ..CardAnswer::default() };
        card = success(&open, &card, None, opened, 1, "c", 6).expect("open").rows.remove(0).0;
        let word = |state| DisputeFacts { dispute_reference: "cb-1".into(), state };
        let kinds = |c: &CallbackChange| {
            c.events
                .iter()
                .map(|e| serde_json::from_str::<CardEvent>(&e.payload).expect("event"))
                .map(|e| (e.kind, e.from_state, e.to_state, e.amount_minor))
                .collect::<Vec<_>>()
        };
        let repr = dispute_callback(&card, &word(DisputeState::Representment), 7, "c").expect("applies");
        assert_eq!(kinds(&repr), [(CardEventKind::DisputeUpdated, Some("SUBMITTED".into()), Some("REPRESENTMENT".into()), None)]);
        card = repr.row;
        for late in [DisputeState::Representment, DisputeState::Submitted, DisputeState::Opened] {
            let again = dispute_callback(&card, &word(late), 8, "c").expect("applies");
            assert_eq!((again.result, again.events.len(), again.row.version), (CallbackResult::Unchanged, 0, card.version), "{late:?}");
        }
        let lost = dispute_callback(&card, &word(DisputeState::Lost), 9, "c").expect("applies");
        assert_eq!(
            kinds(&lost),
            [
                (CardEventKind::DisputeUpdated, Some("REPRESENTMENT".into()), Some("LOST".into()), None),
                (CardEventKind::ProvisionalCredit, None, Some("REVERSED".into()), Some(-1_250)),
            ]
        );
        card = lost.row;
        assert_eq!(dispute_callback(&card, &word(DisputeState::Won), 10, "c").expect("applies").result, CallbackResult::Contradiction);
        assert_eq!(dispute_callback(&card, &word(DisputeState::Lost), 10, "c").expect("applies").result, CallbackResult::Unchanged);
        assert!(dispute_callback(&card, &DisputeFacts { dispute_reference: "other".into(), state: DisputeState::Won }, 11, "c").is_err());
    }

    #[test]
    fn a_returned_shipment_is_published_once() {
        let mut card = reservation("card-1", "marqeta", CardForm::Physical, None, "k", 0).expect("row");
        card = success(&command(CardAction::Issue), &card, None, answer(None), 1, "c", 5).expect("issue").rows.remove(0).0;
        let returned = shipping_returned(&card, 6, "c").expect("applies");
        assert_eq!((returned.result, returned.events.len()), (CallbackResult::Changed, 1));
        assert!(returned.events[0].payload.contains("CARD_SHIPPING_RETURNED"));
        let again = shipping_returned(&returned.row, 7, "c").expect("applies");
        assert_eq!((again.result, again.events.len(), again.row.version), (CallbackResult::Unchanged, 0, returned.row.version));
    }

    #[test]
    fn a_set_pin_moves_no_state_but_still_the_version() {
        let mut card = reservation("card-1", "lithic", CardForm::Virtual, None, "k", 0).expect("row");
        card = success(&command(CardAction::Issue), &card, None, answer(None), 1, "c", 5).expect("issue").rows.remove(0).0;
        let change = success(&command(CardAction::SetPin), &card, None, answer(Some(CardState::Issued)), 1, "c", 6).expect("pin");
        assert!(change.events.is_empty());
        assert_eq!(change.rows[0].0.version, 3);
    }
}
