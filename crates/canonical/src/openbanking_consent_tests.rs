use super::*;
use crate::openbanking::tests::{command, payment};
use crate::openbanking::{RefreshSpec, RefreshTrigger};

const T: ConsentTimings = ConsentTimings { expiring_window_ms: 1_000, renew_margin_ms: 100 };
const DAY: i64 = 10_000;

/// A data consent in `state` whose grant ends at DAY and whose access token
/// lapses at 5_000; a hand-off outstanding where one belongs.
fn consent(state: ConsentState) -> Consent {
    let mut c = Consent::requested(vec![ConsentScope::Accounts, ConsentScope::Transactions], None);
    c.state = state;
    if matches!(state, ConsentState::Active | ConsentState::Expiring | ConsentState::LoginRequired) {
        c.expires_at_ms = Some(DAY);
        c.access_expires_at_ms = Some(5_000);
    }
    if state == ConsentState::AwaitingUser {
        c.handoff_expires_at_ms = Some(600);
    }
    c
}

fn refresh() -> OpenBankingCommand {
    let mut c = command(OpenBankingAction::Refresh);
    c.refresh = Some(RefreshSpec { datasets: vec![], trigger: RefreshTrigger::Scheduled });
    c
}

fn for_action(action: OpenBankingAction) -> OpenBankingCommand {
    match action {
        OpenBankingAction::Refresh => refresh(),
        OpenBankingAction::InitiatePayment => {
            let mut c = command(action);
            c.payment = Some(payment());
            c
        }
        _ => command(action),
    }
}

/// Short names for the expected decisions below.
fn call(p: ProviderCall) -> Decision {
    Decision::CallProvider(p)
}
fn answered(state: ConsentState) -> Decision {
    Decision::AnswerWithoutCall { answer: state.answer(), state }
}
fn refused(code: OpenBankingRefusal) -> Option<OpenBankingRefusal> {
    Some(code)
}

/// Every command against every state (and no consent), at a time before
/// any deadline: written out as the issue states the machine, not derived
/// from the code.
#[test]
fn every_command_in_every_state() {
    use ConsentState as S;
    use OpenBankingAction as A;
    use OpenBankingRefusal as R;
    let sync = || call(ProviderCall::Sync { datasets: vec![Dataset::Accounts, Dataset::Transactions], renew_access_first: false });
    // (state, action) -> expected decision, or the refusal code expected.
    type Row = (Option<S>, A, Result<Decision, Option<R>>);
    let table: Vec<Row> = vec![
        (None, A::CreateConsent, Ok(call(ProviderCall::CreateHandoff { reauth: false }))),
        (None, A::CompleteConsent, Err(refused(R::ConsentNotFound))),
        (None, A::Refresh, Err(refused(R::ConsentNotFound))),
        (None, A::RevokeConsent, Err(refused(R::ConsentNotFound))),
        (None, A::InitiatePayment, Err(refused(R::ConsentNotFound))),
        (Some(S::Requested), A::CreateConsent, Ok(call(ProviderCall::CreateHandoff { reauth: false }))),
        (Some(S::Requested), A::CompleteConsent, Err(refused(R::IllegalTransition))),
        (Some(S::Requested), A::Refresh, Ok(answered(S::Requested))),
        (Some(S::Requested), A::RevokeConsent, Ok(Decision::AnswerWithoutCall { answer: OpenBankingKind::Revoked, state: S::Revoked })),
        (Some(S::Requested), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::AwaitingUser), A::CreateConsent, Ok(call(ProviderCall::CreateHandoff { reauth: false }))),
        (Some(S::AwaitingUser), A::CompleteConsent, Ok(call(ProviderCall::ExchangeAuthorization))),
        (Some(S::AwaitingUser), A::Refresh, Ok(answered(S::AwaitingUser))),
        (Some(S::AwaitingUser), A::RevokeConsent, Ok(Decision::AnswerWithoutCall { answer: OpenBankingKind::Revoked, state: S::Revoked })),
        (Some(S::AwaitingUser), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::Active), A::CreateConsent, Err(refused(R::ConsentExists))),
        (Some(S::Active), A::CompleteConsent, Ok(answered(S::Active))),
        (Some(S::Active), A::Refresh, Ok(sync())),
        (Some(S::Active), A::RevokeConsent, Ok(call(ProviderCall::RemoveConnection))),
        (Some(S::Active), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::Expiring), A::CreateConsent, Ok(call(ProviderCall::CreateHandoff { reauth: true }))),
        (Some(S::Expiring), A::CompleteConsent, Err(refused(R::IllegalTransition))),
        (Some(S::Expiring), A::Refresh, Ok(sync())),
        (Some(S::Expiring), A::RevokeConsent, Ok(call(ProviderCall::RemoveConnection))),
        (Some(S::Expiring), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::LoginRequired), A::CreateConsent, Ok(call(ProviderCall::CreateHandoff { reauth: true }))),
        (Some(S::LoginRequired), A::CompleteConsent, Err(refused(R::IllegalTransition))),
        (Some(S::LoginRequired), A::Refresh, Ok(answered(S::LoginRequired))),
        (Some(S::LoginRequired), A::RevokeConsent, Ok(call(ProviderCall::RemoveConnection))),
        (Some(S::LoginRequired), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::Expired), A::CreateConsent, Err(refused(R::ConsentClosed))),
        (Some(S::Expired), A::CompleteConsent, Ok(answered(S::Expired))),
        (Some(S::Expired), A::Refresh, Ok(answered(S::Expired))),
        (Some(S::Expired), A::RevokeConsent, Ok(call(ProviderCall::RemoveConnection))),
        (Some(S::Expired), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
        (Some(S::Revoked), A::CreateConsent, Err(refused(R::ConsentClosed))),
        (Some(S::Revoked), A::CompleteConsent, Ok(answered(S::Revoked))),
        (Some(S::Revoked), A::Refresh, Ok(answered(S::Revoked))),
        (Some(S::Revoked), A::RevokeConsent, Ok(answered(S::Revoked))),
        (Some(S::Revoked), A::InitiatePayment, Err(refused(R::ScopeNotGranted))),
    ];
    assert_eq!(table.len(), (S::ALL.len() + 1) * A::ALL.len(), "every pair once");
    for (state, action, want) in table {
        let stored = state.map(consent);
        let got = decide(stored.as_ref(), &for_action(action), 100, T);
        match (want, got) {
            (Ok(want), got) => assert_eq!(got, want, "{action:?} on {state:?}"),
            (Err(code), Decision::Reject(r)) => {
                assert_eq!(Some(r.code), code, "{action:?} on {state:?}: {}", r.message);
                assert!(!r.message.is_empty());
            }
            (Err(code), got) => panic!("{action:?} on {state:?}: expected refusal {code:?}, got {got:?}"),
        }
    }
}

/// A payment consent in every state: payments go to the provider only
/// while the grant works, and a single-payment consent makes only its own.
#[test]
fn payments_need_a_usable_grant_of_payment_initiation() {
    use ConsentState as S;
    let pay = for_action(OpenBankingAction::InitiatePayment);
    for state in S::ALL {
        let mut c = consent(state);
        c.scopes = vec![ConsentScope::PaymentInitiation];
        let got = decide(Some(&c), &pay, 100, T);
        let want = match state {
            S::Active | S::Expiring => call(ProviderCall::CreatePayment { renew_access_first: false }),
            other => answered(other),
        };
        assert_eq!(got, want, "{state:?}");
        // The same consent made for another payment refuses this one in any state.
        c.payment_id = Some("pay-other".into());
        match decide(Some(&c), &pay, 100, T) {
            Decision::Reject(r) => assert_eq!(r.code, OpenBankingRefusal::IllegalTransition, "{state:?}"),
            other => panic!("{state:?}: {other:?}"),
        }
        c.payment_id = Some("pay-1".into());
        assert_eq!(decide(Some(&c), &pay, 100, T), want, "its own payment: {state:?}");
    }
}

#[test]
fn a_refresh_against_an_expired_or_revoked_consent_never_reaches_the_provider() {
    // Stored as active, but the grant ended at DAY and nothing has run since:
    // the deadline passed in decides, not the stored state.
    let active = consent(ConsentState::Active);
    assert_eq!(decide(Some(&active), &refresh(), DAY, T), answered(ConsentState::Expired));
    assert_eq!(decide(Some(&active), &refresh(), DAY - 1, T), call(ProviderCall::Sync { datasets: vec![Dataset::Accounts, Dataset::Transactions], renew_access_first: true }));
    let mut revoked = active.clone();
    assert_eq!(revoked.observe(ConsentSignal::Revoked, 50), ConsentObserved::Entered(ConsentState::Revoked));
    assert_eq!(decide(Some(&revoked), &refresh(), 60, T), answered(ConsentState::Revoked));
    // Login required, also after its re-authentication hand-off lapsed.
    let mut login = consent(ConsentState::LoginRequired);
    login.handoff_expires_at_ms = Some(200);
    assert_eq!(decide(Some(&login), &refresh(), 300, T), answered(ConsentState::LoginRequired));
}

#[test]
fn a_refresh_of_what_the_consent_does_not_grant_is_refused() {
    let mut r = refresh();
    r.refresh = Some(RefreshSpec { datasets: vec![Dataset::Balances], trigger: RefreshTrigger::OnDemand });
    match decide(Some(&consent(ConsentState::Active)), &r, 100, T) {
        Decision::Reject(refusal) => {
            assert_eq!(refusal.code, OpenBankingRefusal::ScopeNotGranted);
            assert!(refusal.message.contains("BALANCES"), "{}", refusal.message);
        }
        other => panic!("{other:?}"),
    }
    let mut payment_only = consent(ConsentState::Active);
    payment_only.scopes = vec![ConsentScope::PaymentInitiation];
    assert!(matches!(decide(Some(&payment_only), &refresh(), 100, T), Decision::Reject(Refused { code: OpenBankingRefusal::ScopeNotGranted, .. })));
}

/// Every signal in every state, stamped after the last change: written out.
#[test]
fn every_signal_in_every_state() {
    use ConsentObserved as O;
    use ConsentState as S;
    let signals = [
        ("handoff", ConsentSignal::HandoffIssued { expires_at_ms: 900 }),
        ("granted", ConsentSignal::Granted { expires_at_ms: Some(2 * DAY), access_expires_at_ms: Some(6_000) }),
        ("renewed", ConsentSignal::AccessRenewed { access_expires_at_ms: Some(7_000) }),
        ("expiring", ConsentSignal::ExpiringSoon { expires_at_ms: None }),
        ("login", ConsentSignal::LoginRequired),
        ("expired", ConsentSignal::Expired),
        ("revoked", ConsentSignal::Revoked),
    ];
    let expected = |state: S, signal: &str| -> O {
        match (state, signal) {
            (S::Revoked, "granted") => O::Contradiction { from: S::Revoked },
            (S::Revoked, _) => O::Unchanged,
            (_, "revoked") => O::Entered(S::Revoked),
            (S::Expired, "granted") => O::Contradiction { from: S::Expired },
            (S::Expired, _) => O::Unchanged,
            (S::Requested, "handoff") => O::Entered(S::AwaitingUser),
            (S::AwaitingUser | S::Expiring | S::LoginRequired, "handoff") => O::Updated,
            (S::Active, "handoff") => O::Contradiction { from: S::Active },
            (S::Active, "granted") => O::Updated,
            (_, "granted") => O::Entered(S::Active),
            (S::Active | S::Expiring, "renewed") => O::Updated,
            (_, "renewed") => O::Unchanged,
            (S::Active, "expiring") => O::Entered(S::Expiring),
            (_, "expiring") => O::Unchanged,
            (S::Active | S::Expiring, "login") => O::Entered(S::LoginRequired),
            (_, "login") => O::Unchanged,
            (_, "expired") => O::Entered(S::Expired),
            other => panic!("no expectation for {other:?}"),
        }
    };
    for state in S::ALL {
        for (name, signal) in signals {
            let mut c = consent(state);
            let before = c.clone();
            let got = c.observe(signal, 50);
            assert_eq!(got, expected(state, name), "{name} on {state:?}");
            match got {
                O::Entered(to) => {
                    assert_eq!(c.state, to);
                    let ours = name == "handoff";
                    assert_eq!(c.changed_at_ms, if ours { i64::MIN } else { 50 }, "{name} on {state:?}: only the provider's clock counts");
                }
                O::Unchanged | O::Contradiction { .. } => assert_eq!(c, before, "{name} on {state:?} changed the record"),
                O::Updated => assert_eq!(c.state, state),
            }
        }
    }
}

#[test]
fn stale_provider_signals_change_nothing_but_a_revocation_always_counts() {
    let mut c = consent(ConsentState::Active);
    assert_eq!(c.observe(ConsentSignal::LoginRequired, 20), ConsentObserved::Entered(ConsentState::LoginRequired));
    // LOGIN_REPAIRED from before the login broke, delivered late.
    let repaired = ConsentSignal::Granted { expires_at_ms: Some(DAY), access_expires_at_ms: Some(5_000) };
    assert_eq!(c.observe(repaired, 10), ConsentObserved::Unchanged);
    assert_eq!(c.observe(ConsentSignal::Expired, 15), ConsentObserved::Unchanged);
    assert_eq!(c.state, ConsentState::LoginRequired);
    assert_eq!(c.observe(ConsentSignal::Revoked, 1), ConsentObserved::Entered(ConsentState::Revoked));
    assert_eq!(c.observe(repaired, 99), ConsentObserved::Contradiction { from: ConsentState::Revoked });

    // Our clock issued the hand-off at 1_000; the provider's, a little
    // behind, stamps the grant 990: a grant, not a stale signal.
    let mut fresh = Consent::requested(vec![ConsentScope::Accounts], None);
    assert_eq!(fresh.observe(ConsentSignal::HandoffIssued { expires_at_ms: 5_000 }, 1_000), ConsentObserved::Entered(ConsentState::AwaitingUser));
    assert_eq!(fresh.observe(repaired, 990), ConsentObserved::Entered(ConsentState::Active));
}

/// The whole path of the issue: requested, hand-off, granted, expiring,
/// login required, re-authenticated, expired; each state's event once.
#[test]
fn a_consent_through_its_life_publishes_one_event_per_change() {
    let mut c = Consent::requested(vec![ConsentScope::Transactions], None);
    let mut events = Vec::new();
    fn note_in(events: &mut Vec<OpenBankingKind>, o: ConsentObserved) {
        if let ConsentObserved::Entered(s) = o {
            events.extend(s.event());
        }
    }
    macro_rules! note {
        ($o:expr) => {
            note_in(&mut events, $o)
        };
    }
    note!(c.observe(ConsentSignal::HandoffIssued { expires_at_ms: 500 }, 1));
    assert_eq!(decide(Some(&c), &for_action(OpenBankingAction::CompleteConsent), 10, T), call(ProviderCall::ExchangeAuthorization));
    note!(c.observe(ConsentSignal::Granted { expires_at_ms: Some(DAY), access_expires_at_ms: Some(2_000) }, 20));
    assert_eq!(c.handoff_expires_at_ms, None);
    // The scheduler's view: renew the token first, then the notice, then the end.
    assert_eq!(c.next_deadline(T), Some((1_900, Deadline::RenewAccess)));
    note!(c.observe(ConsentSignal::AccessRenewed { access_expires_at_ms: Some(DAY + 5_000) }, 1_900));
    assert_eq!(c.next_deadline(T), Some((DAY - 1_000, Deadline::ExpiringNotice)));
    for s in c.advance(DAY - 1_000, T) {
        events.extend(s.event());
    }
    assert_eq!(c.state, ConsentState::Expiring);
    assert_eq!(c.next_deadline(T), Some((DAY, Deadline::Expire)), "the grant ends before the token would need renewing");
    note!(c.observe(ConsentSignal::LoginRequired, DAY - 900));
    assert_eq!(decide(Some(&c), &for_action(OpenBankingAction::CreateConsent), DAY - 800, T), call(ProviderCall::CreateHandoff { reauth: true }));
    note!(c.observe(ConsentSignal::HandoffIssued { expires_at_ms: DAY - 100 }, DAY - 800));
    assert_eq!(c.state, ConsentState::LoginRequired, "the re-auth hand-off changes no state");
    assert_eq!(decide(Some(&c), &for_action(OpenBankingAction::CompleteConsent), DAY - 700, T), call(ProviderCall::ExchangeAuthorization));
    note!(c.observe(ConsentSignal::Granted { expires_at_ms: Some(3 * DAY), access_expires_at_ms: Some(3 * DAY) }, DAY - 600));
    assert_eq!(c.state, ConsentState::Active);
    assert_eq!(c.advance(2 * DAY, T), Vec::<ConsentState>::new());
    // Nothing ran for a long time: it expires without a late warning first.
    for s in c.advance(5 * DAY, T) {
        events.extend(s.event());
    }
    use OpenBankingKind as K;
    assert_eq!(events, vec![K::AuthRequired, K::ConsentActive, K::ConsentExpiring, K::LoginRequired, K::ConsentActive, K::ConsentExpired]);
    // A provider signal stamped before the deadline that ended it is stale.
    assert_eq!(c.observe(ConsentSignal::Granted { expires_at_ms: Some(9 * DAY), access_expires_at_ms: None }, 3 * DAY - 1), ConsentObserved::Unchanged);
}

#[test]
fn deadlines_apply_only_to_grants_that_have_an_end() {
    let mut no_end = consent(ConsentState::Active);
    no_end.expires_at_ms = None;
    assert_eq!(no_end.state_at(i64::MAX, T), ConsentState::Active);
    assert_eq!(no_end.next_deadline(T), Some((4_900, Deadline::RenewAccess)));
    no_end.access_expires_at_ms = None;
    assert_eq!(no_end.next_deadline(T), None);
    for state in [ConsentState::Requested, ConsentState::AwaitingUser, ConsentState::Revoked, ConsentState::Expired] {
        let mut c = consent(state);
        c.expires_at_ms = Some(10);
        assert_eq!(c.state_at(i64::MAX, T), state, "{state:?} has no deadline of its own");
    }
    let login = consent(ConsentState::LoginRequired);
    assert_eq!(login.state_at(DAY - 1_000, T), ConsentState::LoginRequired, "no expiring notice while login is required");
    assert_eq!(login.state_at(DAY, T), ConsentState::Expired);
}

/// Random signals and clock steps against one consent: whatever arrives, a
/// revoked consent stays revoked, an expired one only becomes revoked, each
/// reported entry is a real change, and no decision on an ended consent
/// calls the provider for anything but removing the connection. Seeded,
/// reproducible (xorshift: no dependency).
#[test]
fn random_signal_sequences_keep_the_machine_invariants() {
    let mut seed: u64 = 0xc0_25e7_2026;
    let mut next = move |n: u64| {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    };
    let commands: Vec<OpenBankingCommand> = OpenBankingAction::ALL.into_iter().map(for_action).collect();
    for round in 0..2_000 {
        let mut c = Consent::requested(vec![ConsentScope::Accounts, ConsentScope::PaymentInitiation], None);
        let mut now: i64 = 0;
        for step in 0..40 {
            let at = now - 50 + next(100) as i64;
            let signal = match next(8) {
                0 => ConsentSignal::HandoffIssued { expires_at_ms: now + 300 },
                1 | 2 => ConsentSignal::Granted { expires_at_ms: Some(now + next(3 * DAY as u64) as i64), access_expires_at_ms: Some(now + 500) },
                3 => ConsentSignal::AccessRenewed { access_expires_at_ms: Some(now + 500) },
                4 => ConsentSignal::ExpiringSoon { expires_at_ms: None },
                5 => ConsentSignal::LoginRequired,
                6 => ConsentSignal::Expired,
                _ => ConsentSignal::Revoked,
            };
            let before = c.state;
            let observed = if next(4) == 0 {
                now += next(DAY as u64) as i64;
                c.advance(now, T).last().copied().map_or(ConsentObserved::Unchanged, ConsentObserved::Entered)
            } else {
                c.observe(signal, at)
            };
            let ctx = format!("round {round} step {step}: {before:?} + {signal:?} -> {observed:?}");
            if let ConsentObserved::Entered(to) = observed {
                assert_ne!(to, before, "{ctx}");
                assert!(to.event().is_some(), "{ctx}: REQUESTED is never re-entered");
            }
            match before {
                ConsentState::Revoked => assert_eq!(c.state, ConsentState::Revoked, "{ctx}"),
                ConsentState::Expired => assert!(c.state.terminal(), "{ctx}"),
                _ => {}
            }
            for cmd in &commands {
                let ended = c.state_at(now, T).terminal();
                match decide(Some(&c), cmd, now, T) {
                    Decision::CallProvider(ProviderCall::RemoveConnection) => {}
                    Decision::CallProvider(p) => assert!(!ended, "{ctx}: {:?} called {p:?} on an ended consent", cmd.action),
                    Decision::AnswerWithoutCall { answer, state } => assert_eq!(answer, state.answer(), "{ctx}"),
                    Decision::Reject(r) => assert!(!r.message.is_empty()),
                }
            }
        }
    }
}

#[test]
fn scheduled_refreshes_spread_within_the_jitter_and_are_stable() {
    let at = scheduled_refresh_at("cons-1", 1_000, 3_600_000, 600_000);
    assert!((3_601_000..=4_201_000).contains(&at), "{at}");
    assert_eq!(at, scheduled_refresh_at("cons-1", 1_000, 3_600_000, 600_000), "a restart reschedules to the same instant");
    let distinct: std::collections::HashSet<i64> = (0..100).map(|i| scheduled_refresh_at(&format!("cons-{i}"), 1_000, 3_600_000, 600_000)).collect();
    assert!(distinct.len() > 90, "consents linked together refresh apart: {}", distinct.len());
    assert_eq!(scheduled_refresh_at("cons-1", 1_000, 10, 0), 1_010);
    assert_eq!(scheduled_refresh_at("cons-1", i64::MAX - 5, 10, 0), i64::MAX, "saturates, never wraps");
}
