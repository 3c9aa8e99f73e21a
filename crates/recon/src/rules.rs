//! The matching rules: given everything stored about one payout, which
//! discrepancies are open as of a moment, and when to look again. Pure: no
//! I/O, no clock; the caller passes `as_of`.
//!
//! A subject's facts are joined by payout id; a posting that names another
//! idempotency key than the outcome's (or, without a key, another
//! correlation id) belongs to another command and is judged on its own. Outcomes are matched across providers: the outcome
//! names the provider that executed (after a failover, the secondary), and an
//! executing event from any other provider is a double execution.
//!
//! Rules that wait for something (a posting, a reversal, a vendor's answer)
//! only fire once their window has passed; until then they report when to
//! look again, so a run inside the window reports no false drift.

use std::collections::HashMap;
use switchyard_canonical::{EventProgress, PayoutStatus, PostingKind, ProviderEventKind, Transition};
use switchyard_canonical::DiscrepancyClass;
use switchyard_store::recon::{OutcomeFact, PostingFact, SubjectFacts};

/// Windows and deadlines the rules apply.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The domain discrepancies are reported under (`payouts`).
    pub domain: String,
    /// Per provider: how long after success a posting may still arrive
    /// (from the partner catalog's `settlement_window`).
    pub settlement_windows_ms: HashMap<String, i64>,
    /// For providers the catalog does not list, and postings with no outcome.
    pub default_window_ms: i64,
    /// How long a payout may stay `pending_unknown` before it is reported and
    /// the vendor is asked.
    pub pending_deadline_ms: i64,
    /// How often a vendor that could not settle a stuck payout is asked again.
    pub settle_retry_ms: i64,
}

impl Policy {
    pub fn window_ms(&self, provider: Option<&str>) -> i64 {
        provider.and_then(|p| self.settlement_windows_ms.get(p)).copied().unwrap_or(self.default_window_ms)
    }
}

/// One open discrepancy as the rules see it; ids and times are added by
/// [`crate::diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub class: DiscrepancyClass,
    pub providers: Vec<String>,
    pub expected: String,
    pub actual: String,
}

/// A `pending_unknown` payout the vendor should be asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRequest {
    pub subject_id: String,
    pub idempotency_key: String,
    pub provider: String,
    pub provider_reference: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Discrepancies open as of the evaluation, at most one per class.
    pub open: Vec<Finding>,
    /// The earliest future moment a waiting rule could fire.
    pub next_check_ms: Option<i64>,
    pub settle: Option<SettleRequest>,
}

/// What the money did at the vendor, as far as outcome and events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Execution {
    /// Paid, or accepted and not (yet) reported failed.
    Executed,
    NotExecuted,
    /// Paid, then the money came back.
    Returned,
    /// `pending_unknown` with no decisive event.
    Unknown,
}

pub(crate) struct Judge<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) as_of: i64,
    /// Judging as facts are stored: absence is not yet trusted.
    pub(crate) inline: bool,
    /// Classes on record as open for the subject.
    pub(crate) already_open: Vec<DiscrepancyClass>,
    pub(crate) verdict: Verdict,
}

impl Judge<'_> {
    pub(crate) fn open(&mut self, class: DiscrepancyClass, providers: Vec<String>, expected: String, actual: String) {
        if self.verdict.open.iter().all(|f| f.class != class) {
            self.verdict.open.push(Finding { class, providers, expected, actual });
        }
    }

    /// A rule about something *absent*: fires `class` once `due` has passed,
    /// otherwise remembers to look again then. Judging inline, a newly found
    /// absence is only scheduled (due now): another topic may still be
    /// catching up with the very fact that is missing, so absence is decided
    /// by the timer evaluation, which runs once the consumer is caught up. An
    /// absence already on record stays open meanwhile.
    pub(crate) fn open_after(&mut self, due: i64, class: DiscrepancyClass, providers: Vec<String>, expected: String, actual: String) {
        let decided = !self.inline || self.already_open.contains(&class);
        if self.as_of >= due && decided {
            self.open(class, providers, expected, actual);
        } else {
            self.wake_at(due);
        }
    }

    pub(crate) fn wake_at(&mut self, at: i64) {
        self.verdict.next_check_ms = Some(self.verdict.next_check_ms.map_or(at, |t| t.min(at)));
    }
}

/// Events of `facts` that arrived after a later stage of the same object
/// from the same provider (`processing` after `paid`): the rules ignore them
/// (`EventProgress`), this names them so the consumer can record that it
/// did. Only ids in `fresh` are returned, so each is reported once, when
/// stored. Arrival order is `received_at_ms`, ties by event id; a paid or
/// failed outcome counts as that provider's first word.
pub fn late_events<'a>(facts: &'a SubjectFacts, fresh: &std::collections::HashSet<&str>) -> Vec<&'a switchyard_store::recon::EventFact> {
    let mut events: Vec<_> = facts.events.iter().collect();
    events.sort_by(|a, b| (a.received_at_ms, &a.event_id).cmp(&(b.received_at_ms, &b.event_id)));
    let mut progress: HashMap<&str, EventProgress> = HashMap::new();
    for o in &facts.outcomes {
        let known = match o.status {
            PayoutStatus::Paid => ProviderEventKind::PayoutPaid,
            PayoutStatus::Failed => ProviderEventKind::PayoutFailed,
            _ => continue,
        };
        if let Some(provider) = o.provider.as_deref() {
            progress.entry(provider).or_default().apply(known);
        }
    }
    let mut late = Vec::new();
    for e in events {
        let step = progress.entry(e.provider.as_str()).or_default().apply(e.kind);
        if step == Transition::Regression && fresh.contains(e.event_id.as_str()) {
            late.push(e);
        }
    }
    late
}

/// Judges one subject as of `as_of`; facts stamped later are not yet known.
/// Every rule is decided, absences included (the timer evaluation).
pub fn judge(facts: &SubjectFacts, policy: &Policy, as_of: i64) -> Verdict {
    judge_with(facts, policy, as_of, false)
}

/// Judges as facts are stored: what the facts show is decided now; what
/// they lack is left to a timer (see `Judge::open_after`).
pub fn judge_inline(facts: &SubjectFacts, policy: &Policy, as_of: i64) -> Verdict {
    judge_with(facts, policy, as_of, true)
}

fn judge_with(facts: &SubjectFacts, policy: &Policy, as_of: i64, inline: bool) -> Verdict {
    let already_open = facts
        .discrepancies
        .iter()
        .filter(|d| d.status == switchyard_canonical::DiscrepancyStatus::Open)
        .map(|d| d.class)
        .collect();
    let mut j = Judge { policy, as_of, inline, already_open, verdict: Verdict::default() };
    if crate::card_rules::is_card_subject(&facts.subject_id) {
        crate::card_rules::judge_card(&mut j, facts);
        return j.verdict;
    }
    let outcomes: Vec<&OutcomeFact> = facts.outcomes.iter().filter(|o| o.completed_at_ms <= as_of).collect();
    let postings: Vec<&PostingFact> = facts.postings.iter().filter(|p| p.posted_at_ms <= as_of).collect();
    let events: Vec<_> = facts.events.iter().filter(|e| e.received_at_ms <= as_of).collect();

    // The outcome that counts is the most final one; the rank rule is the
    // store's, so both agree on which outcome supersedes which.
    let Some(outcome) = outcomes.iter().copied().max_by_key(|o| (o.rank(), o.completed_at_ms)) else {
        judge_orphan_postings(&mut j, &postings);
        // Events under an id no outcome has may name the payout by the
        // vendor's own id: the timer pass tries to join them, now and then
        // again while the outcome may still arrive (the default window).
        if let Some(last) = events.iter().map(|e| e.received_at_ms).max() {
            if inline {
                j.wake_at(last);
            } else if as_of < last.saturating_add(policy.default_window_ms) {
                j.wake_at(as_of.saturating_add(policy.settle_retry_ms));
            }
        }
        return j.verdict;
    };
    let provider = outcome.provider.clone();
    let named: Vec<String> = provider.iter().cloned().collect();

    // Two commands for one payout that both moved money.
    let executed_keys: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o.status, PayoutStatus::Paid | PayoutStatus::Submitted))
        .map(|o| o.idempotency_key.as_str())
        .collect();
    if executed_keys.len() > 1 {
        j.open(
            DiscrepancyClass::DoubleExecution,
            named.clone(),
            "one execution per payout".into(),
            format!("succeeded under {} idempotency keys: {}", executed_keys.len(), executed_keys.join(", ")),
        );
    }

    // The outcome's provider's story, with the outcome's own terminal state
    // folded in first: EventProgress then calls "failed after paid" (either
    // way round) a contradiction and "returned after paid" progress.
    let mut progress = EventProgress::default();
    match outcome.status {
        PayoutStatus::Paid => {
            progress.apply(ProviderEventKind::PayoutPaid);
        }
        PayoutStatus::Failed => {
            progress.apply(ProviderEventKind::PayoutFailed);
        }
        PayoutStatus::Submitted | PayoutStatus::PendingUnknown | PayoutStatus::Rejected | PayoutStatus::Held => {}
    }
    let mut contradiction: Option<String> = None;
    for e in events.iter().filter(|e| Some(&e.provider) == provider.as_ref()) {
        let before = progress.latest;
        if progress.apply(e.kind) == Transition::Contradiction && contradiction.is_none() {
            let was = before.map_or("nothing", ProviderEventKind::as_str);
            contradiction = Some(format!("{} reported {} ({}) after {was}", e.provider, e.kind.as_str(), e.event_id));
        }
    }
    if let Some(actual) = contradiction {
        j.open(
            DiscrepancyClass::EventContradictsOutcome,
            named.clone(),
            format!("outcome {}", outcome.status.as_str()),
            actual,
        );
    }
    // Any sign of execution from a provider the outcome does not name.
    for e in events.iter().filter(|e| Some(&e.provider) != provider.as_ref()) {
        let executes = matches!(
            e.kind,
            ProviderEventKind::PayoutCreated
                | ProviderEventKind::PayoutProcessing
                | ProviderEventKind::PayoutPaid
                | ProviderEventKind::PayoutReturned
        );
        if executes {
            let mut providers = named.clone();
            providers.push(e.provider.clone());
            let by = provider.as_deref().unwrap_or("no provider");
            j.open(
                DiscrepancyClass::DoubleExecution,
                providers,
                format!("executed once, by {by} (outcome {})", outcome.status.as_str()),
                format!("{} also reported {} ({})", e.provider, e.kind.as_str(), e.event_id),
            );
        }
    }

    let execution = match (outcome.status, progress.latest) {
        (_, Some(ProviderEventKind::PayoutReturned)) => Execution::Returned,
        (PayoutStatus::Paid, _) => Execution::Executed,
        (PayoutStatus::Failed | PayoutStatus::Rejected | PayoutStatus::Held, _) => Execution::NotExecuted,
        (_, Some(ProviderEventKind::PayoutFailed | ProviderEventKind::PayoutCanceled)) => Execution::NotExecuted,
        (PayoutStatus::Submitted, _) => Execution::Executed,
        (PayoutStatus::PendingUnknown, Some(ProviderEventKind::PayoutPaid | ProviderEventKind::PayoutProcessing | ProviderEventKind::PayoutCreated)) => {
            Execution::Executed
        }
        (PayoutStatus::PendingUnknown, _) => Execution::Unknown,
    };

    if execution == Execution::Unknown {
        let due = outcome.completed_at_ms.saturating_add(policy.pending_deadline_ms);
        let already = j.already_open.contains(&DiscrepancyClass::StuckPendingUnknown);
        if as_of >= due && !j.inline {
            j.open(
                DiscrepancyClass::StuckPendingUnknown,
                named.clone(),
                "paid or failed within the pending deadline".into(),
                format!("pending_unknown since {} ms", outcome.completed_at_ms),
            );
            if let Some(p) = &provider {
                j.wake_at(as_of.saturating_add(policy.settle_retry_ms));
                j.verdict.settle = Some(SettleRequest {
                    subject_id: outcome.subject_id.clone(),
                    idempotency_key: outcome.idempotency_key.clone(),
                    provider: p.clone(),
                    provider_reference: outcome.provider_reference.clone(),
                    amount_minor: outcome.amount_minor,
                    currency: outcome.currency.clone(),
                    correlation_id: outcome.correlation_id.clone(),
                });
            }
        } else {
            if already {
                // Inline: still stuck, and the timer keeps asking the vendor.
                j.open(
                    DiscrepancyClass::StuckPendingUnknown,
                    named.clone(),
                    "paid or failed within the pending deadline".into(),
                    format!("pending_unknown since {} ms", outcome.completed_at_ms),
                );
            }
            j.wake_at(due);
        }
    }

    // Postings of this command; one naming another key belongs elsewhere.
    // The idempotency key decides when the posting carries one; otherwise
    // the correlation id, when both sides kept it.
    let belongs = |p: &&PostingFact| match (&p.idempotency_key, &p.correlation_id, &outcome.correlation_id) {
        (Some(k), _, _) => *k == outcome.idempotency_key,
        (None, Some(c), Some(oc)) => c == oc,
        (None, _, _) => true,
    };
    let (matched, foreign): (Vec<&PostingFact>, Vec<&PostingFact>) = postings.iter().copied().partition(belongs);
    let payouts = matched.iter().filter(|p| p.kind == PostingKind::Payout).count() as i64;
    let reversals = matched.iter().filter(|p| p.kind == PostingKind::Reversal).count() as i64;
    let net = payouts - reversals;

    for p in &matched {
        if p.amount_minor != outcome.amount_minor || p.currency != outcome.currency {
            j.open(
                DiscrepancyClass::AmountMismatch,
                named.clone(),
                format!("{} {}", outcome.amount_minor, outcome.currency),
                format!("{} {} ({} posting {})", p.amount_minor, p.currency, p.kind.as_str(), p.posting_id),
            );
        }
    }
    if net > 1 {
        j.open(
            DiscrepancyClass::DuplicatePosting,
            named.clone(),
            "one payout posting".into(),
            format!("{payouts} payout and {reversals} reversal postings: {}", posting_ids(&matched)),
        );
    }

    let window = policy.window_ms(provider.as_deref());
    let since = outcome.completed_at_ms.max(matched.iter().map(|p| p.posted_at_ms).max().unwrap_or(i64::MIN));
    let shown = |n: i64| format!("net {n} payout posting(s) ({payouts} payout, {reversals} reversal)");
    match execution {
        Execution::Executed if net < 1 => j.open_after(
            outcome.completed_at_ms.saturating_add(window),
            DiscrepancyClass::MissingPosting,
            named.clone(),
            format!("a payout posting within {} of {} ms", human(window), outcome.completed_at_ms),
            shown(net),
        ),
        Execution::NotExecuted if net > 0 => j.open_after(
            since.saturating_add(window),
            DiscrepancyClass::UnexpectedPosting,
            named.clone(),
            format!("no posting, or a reversal (outcome {})", outcome.status.as_str()),
            shown(net),
        ),
        // A return is drift from the moment it is known until core banking
        // books the reversal.
        Execution::Returned if net != 0 => j.open(
            DiscrepancyClass::PayoutReturned,
            named.clone(),
            format!("a reversal posting (outcome {}, then returned)", outcome.status.as_str()),
            shown(net),
        ),
        Execution::Executed | Execution::NotExecuted | Execution::Returned | Execution::Unknown => {}
    }
    judge_orphan_postings(&mut j, &foreign);
    j.verdict
}

/// Postings no outcome of the subject accounts for: money booked for a
/// payout switchyard never executed, once the window for a late outcome passed.
fn judge_orphan_postings(j: &mut Judge<'_>, postings: &[&PostingFact]) {
    let net: i64 = postings.iter().map(|p| if p.kind == PostingKind::Payout { 1 } else { -1 }).sum();
    if net == 0 {
        return;
    }
    let last = postings.iter().map(|p| p.posted_at_ms).max().unwrap_or(0);
    let window = j.policy.default_window_ms;
    j.open_after(
        last.saturating_add(window),
        DiscrepancyClass::UnexpectedPosting,
        Vec::new(),
        "a succeeded outcome for every posting".into(),
        format!("no matching outcome for {}", posting_ids(postings)),
    );
    if net > 1 {
        j.open(DiscrepancyClass::DuplicatePosting, Vec::new(), "one payout posting".into(), format!("net {net}: {}", posting_ids(postings)));
    }
}

fn posting_ids(postings: &[&PostingFact]) -> String {
    postings.iter().map(|p| p.posting_id.as_str()).collect::<Vec<_>>().join(", ")
}

pub(crate) fn human(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_store::recon::EventFact;
    use DiscrepancyClass::*;

    const H: i64 = 3_600_000;

    fn policy() -> Policy {
        Policy {
            domain: "payouts".into(),
            settlement_windows_ms: HashMap::from([("stripe".to_owned(), 36 * H), ("adyen".to_owned(), 24 * H)]),
            default_window_ms: 24 * H,
            pending_deadline_ms: H,
            settle_retry_ms: 60_000,
        }
    }

    fn outcome(status: PayoutStatus, provider: &str) -> OutcomeFact {
        OutcomeFact {
            subject_id: "po-1".into(),
            idempotency_key: "k-1".into(),
            status,
            provider: Some(provider.into()),
            provider_reference: Some("ref".into()),
            amount_minor: 1250,
            currency: "EUR".into(),
            correlation_id: Some("corr".into()),
            completed_at_ms: 1000,
        }
    }

    fn posting(id: &str, kind: PostingKind, amount: i64, currency: &str) -> PostingFact {
        PostingFact {
            posting_id: id.into(),
            subject_id: "po-1".into(),
            idempotency_key: Some("k-1".into()),
            correlation_id: None,
            kind,
            amount_minor: amount,
            currency: currency.into(),
            posted_at_ms: 2000,
        }
    }

    fn event(provider: &str, kind: ProviderEventKind, at: i64) -> EventFact {
        EventFact {
            provider: provider.into(),
            event_id: format!("evt-{provider}-{}", kind.as_str()),
            subject_id: "po-1".into(),
            provider_reference: "ref".into(),
            kind,
            amount_minor: Some(1250),
            currency: Some("EUR".into()),
            occurred_at_ms: at,
            received_at_ms: at,
        }
    }

    fn facts(outcomes: Vec<OutcomeFact>, postings: Vec<PostingFact>, events: Vec<EventFact>) -> SubjectFacts {
        SubjectFacts { subject_id: "po-1".into(), outcomes, postings, events, ..SubjectFacts::default() }
    }

    fn classes(v: &Verdict) -> Vec<DiscrepancyClass> {
        let mut c: Vec<_> = v.open.iter().map(|f| f.class).collect();
        c.sort();
        c
    }

    #[test]
    fn a_paid_payout_with_its_posting_is_clean_and_needs_no_second_look() {
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1250, "EUR")], vec![]);
        let v = judge(&f, &policy(), 100 * H);
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn a_missing_posting_waits_for_the_providers_window() {
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![], vec![]);
        let inside = judge(&f, &policy(), 1000 + 35 * H);
        assert!(inside.open.is_empty(), "no false drift inside stripe's 36h window");
        assert_eq!(inside.next_check_ms, Some(1000 + 36 * H));
        assert_eq!(classes(&judge(&f, &policy(), 1000 + 36 * H)), vec![MissingPosting]);
        // Adyen's window is shorter.
        let adyen = facts(vec![outcome(PayoutStatus::Paid, "adyen")], vec![], vec![]);
        assert_eq!(classes(&judge(&adyen, &policy(), 1000 + 25 * H)), vec![MissingPosting]);
    }

    #[test]
    fn postings_without_a_succeeded_outcome_are_unexpected_unless_reversed() {
        let orphan = facts(vec![], vec![posting("p1", PostingKind::Payout, 1250, "EUR")], vec![]);
        assert!(judge(&orphan, &policy(), 2000 + H).open.is_empty(), "the outcome may still come");
        assert_eq!(classes(&judge(&orphan, &policy(), 2000 + 24 * H)), vec![UnexpectedPosting]);
        let failed = facts(vec![outcome(PayoutStatus::Failed, "stripe")], vec![posting("p1", PostingKind::Payout, 1250, "EUR")], vec![]);
        assert_eq!(classes(&judge(&failed, &policy(), 100 * H)), vec![UnexpectedPosting]);
        let reversed = facts(
            vec![outcome(PayoutStatus::Failed, "stripe")],
            vec![posting("p1", PostingKind::Payout, 1250, "EUR"), posting("p2", PostingKind::Reversal, 1250, "EUR")],
            vec![],
        );
        assert!(judge(&reversed, &policy(), 100 * H).open.is_empty());
        // A posting for another command of the same payout is not this one's.
        let mut foreign = posting("p9", PostingKind::Payout, 1250, "EUR");
        foreign.idempotency_key = Some("other-key".into());
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1250, "EUR"), foreign], vec![]);
        assert_eq!(classes(&judge(&f, &policy(), 100 * H)), vec![UnexpectedPosting]);
        // Without a key, the correlation id tells.
        let mut by_correlation = posting("p9", PostingKind::Payout, 1250, "EUR");
        by_correlation.idempotency_key = None;
        by_correlation.correlation_id = Some("another-flow".into());
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1250, "EUR"), by_correlation.clone()], vec![]);
        assert_eq!(classes(&judge(&f, &policy(), 100 * H)), vec![UnexpectedPosting]);
        by_correlation.correlation_id = Some("corr".into());
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![by_correlation], vec![]);
        assert!(judge(&f, &policy(), 100 * H).open.is_empty(), "matched by correlation id");
    }

    #[test]
    fn amount_and_currency_mismatches_and_duplicates_are_immediate() {
        let amount = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1205, "EUR")], vec![]);
        let v = judge(&amount, &policy(), 3000);
        assert_eq!(classes(&v), vec![AmountMismatch]);
        assert_eq!(v.open[0].expected, "1250 EUR");
        let currency = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1250, "USD")], vec![]);
        assert_eq!(classes(&judge(&currency, &policy(), 3000)), vec![AmountMismatch]);
        let twice = facts(
            vec![outcome(PayoutStatus::Paid, "stripe")],
            vec![posting("p1", PostingKind::Payout, 1250, "EUR"), posting("p2", PostingKind::Payout, 1250, "EUR")],
            vec![],
        );
        assert_eq!(classes(&judge(&twice, &policy(), 3000)), vec![DuplicatePosting]);
    }

    #[test]
    fn events_contradicting_the_outcome() {
        let paid = || outcome(PayoutStatus::Paid, "stripe");
        let booked = || vec![posting("p1", PostingKind::Payout, 1250, "EUR")];
        let failed_after_paid = facts(vec![paid()], booked(), vec![event("stripe", ProviderEventKind::PayoutFailed, 1500)]);
        assert_eq!(classes(&judge(&failed_after_paid, &policy(), 3000)), vec![EventContradictsOutcome]);
        let paid_after_failed =
            facts(vec![outcome(PayoutStatus::Failed, "stripe")], vec![], vec![event("stripe", ProviderEventKind::PayoutPaid, 1500)]);
        assert_eq!(classes(&judge(&paid_after_failed, &policy(), 3000)), vec![EventContradictsOutcome]);
        // A late "processing" after paid is a regression, not drift.
        let late = facts(vec![paid()], booked(), vec![event("stripe", ProviderEventKind::PayoutProcessing, 1500)]);
        assert!(judge(&late, &policy(), 3000).open.is_empty());
        let returned = facts(vec![paid()], booked(), vec![event("stripe", ProviderEventKind::PayoutReturned, 1500)]);
        assert_eq!(classes(&judge(&returned, &policy(), 3000)), vec![PayoutReturned]);
        let mut reversal = booked();
        reversal.push(posting("p2", PostingKind::Reversal, 1250, "EUR"));
        let reversed = facts(vec![paid()], reversal, vec![event("stripe", ProviderEventKind::PayoutReturned, 1500)]);
        assert!(judge(&reversed, &policy(), 3000).open.is_empty(), "the reversal closes the return");
    }

    #[test]
    fn a_late_settlement_by_the_primary_after_failover_is_a_double_execution() {
        let f = facts(
            vec![outcome(PayoutStatus::Paid, "adyen")],
            vec![posting("p1", PostingKind::Payout, 1250, "EUR")],
            vec![event("stripe", ProviderEventKind::PayoutPaid, 5000)],
        );
        let v = judge(&f, &policy(), 6000);
        assert_eq!(classes(&v), vec![DoubleExecution]);
        assert_eq!(v.open[0].providers, vec!["adyen".to_owned(), "stripe".to_owned()]);
        // The primary's refusal is no execution.
        let refused = facts(
            vec![outcome(PayoutStatus::Paid, "adyen")],
            vec![posting("p1", PostingKind::Payout, 1250, "EUR")],
            vec![event("stripe", ProviderEventKind::PayoutFailed, 5000)],
        );
        assert!(judge(&refused, &policy(), 6000).open.is_empty());
    }

    #[test]
    fn pending_unknown_past_its_deadline_is_stuck_and_asks_the_vendor() {
        let f = facts(vec![outcome(PayoutStatus::PendingUnknown, "stripe")], vec![], vec![]);
        let early = judge(&f, &policy(), 1000 + H / 2);
        assert!(early.open.is_empty() && early.settle.is_none());
        assert_eq!(early.next_check_ms, Some(1000 + H));
        let late = judge(&f, &policy(), 1000 + H);
        assert_eq!(classes(&late), vec![StuckPendingUnknown]);
        let ask = late.settle.expect("asks the vendor");
        assert_eq!((ask.provider.as_str(), ask.idempotency_key.as_str()), ("stripe", "k-1"));
        // The vendor's own event settles it: then the posting rules apply.
        let told = facts(vec![outcome(PayoutStatus::PendingUnknown, "stripe")], vec![], vec![event("stripe", ProviderEventKind::PayoutPaid, 1500)]);
        let v = judge(&told, &policy(), 1000 + H);
        assert!(v.open.is_empty() && v.settle.is_none());
        assert_eq!(v.next_check_ms, Some(1000 + 36 * H), "now waits for its posting");
    }

    #[test]
    fn judged_inline_an_absence_waits_for_the_timer_but_an_open_one_stays_open() {
        let f = facts(vec![], vec![posting("p1", PostingKind::Payout, 1250, "EUR")], vec![]);
        let v = judge_inline(&f, &policy(), 100 * H);
        assert!(v.open.is_empty(), "the outcome topic may still be catching up");
        assert_eq!(v.next_check_ms, Some(2000 + 24 * H), "due already: the next timer pass decides");
        let mut on_record = f.clone();
        on_record.discrepancies = crate::track::track("payouts", "po-1", &[], &judge(&f, &policy(), 100 * H).open, 5).0;
        assert_eq!(classes(&judge_inline(&on_record, &policy(), 100 * H)), vec![UnexpectedPosting]);
        // What the facts do show is decided inline.
        let wrong = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1, "EUR")], vec![]);
        assert_eq!(classes(&judge_inline(&wrong, &policy(), 100 * H)), vec![AmountMismatch]);
        let stuck = facts(vec![outcome(PayoutStatus::PendingUnknown, "stripe")], vec![], vec![]);
        let v = judge_inline(&stuck, &policy(), 100 * H);
        assert!(v.open.is_empty() && v.settle.is_none());
    }

    #[test]
    fn an_idempotency_collision_rejected_later_does_not_hide_the_executed_payout() {
        let mut collision = outcome(PayoutStatus::Rejected, "stripe");
        collision.provider = None;
        collision.amount_minor = 999_999;
        collision.completed_at_ms = 5000;
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe"), collision], vec![posting("p1", PostingKind::Payout, 1250, "EUR")], vec![]);
        assert!(judge(&f, &policy(), 100 * H).open.is_empty());
    }

    #[test]
    fn events_under_an_unknown_id_are_looked_at_again_until_the_window_ends() {
        let stray = facts(vec![], vec![], vec![event("stripe", ProviderEventKind::PayoutPaid, 1000)]);
        assert_eq!(judge_inline(&stray, &policy(), 2000).next_check_ms, Some(1000));
        assert_eq!(judge(&stray, &policy(), 2000).next_check_ms, Some(2000 + 60_000));
        assert_eq!(judge(&stray, &policy(), 1000 + 24 * H).next_check_ms, None, "given up after the window");
    }

    #[test]
    fn facts_after_the_evaluation_time_are_not_yet_known() {
        let f = facts(vec![outcome(PayoutStatus::Paid, "stripe")], vec![posting("p1", PostingKind::Payout, 1205, "EUR")], vec![]);
        assert!(judge(&f, &policy(), 1500).open.is_empty(), "the posting at 2000 is in the future");
    }

    #[test]
    fn a_processing_event_stored_after_paid_is_named_late_once() {
        let mut f = facts(vec![], vec![], vec![event("stripe", ProviderEventKind::PayoutPaid, 1000)]);
        let mut processing = event("stripe", ProviderEventKind::PayoutProcessing, 2000);
        processing.event_id = "evt_processing".into();
        f.events.push(processing);
        let fresh: std::collections::HashSet<&str> = ["evt_processing"].into_iter().collect();
        let late = late_events(&f, &fresh);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].event_id, "evt_processing");
        assert!(late_events(&f, &std::collections::HashSet::new()).is_empty(), "reported once, when fresh");
    }
}
