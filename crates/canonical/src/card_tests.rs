use super::*;

/// A command for card-1 with no payload; each test adds what it checks.
fn command(action: CardAction) -> CardCommand {
    CardCommand {
        card_id: "card-1".into(),
        idempotency_key: "k-1".into(),
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

fn card(form: CardForm, state: CardState) -> CardLifecycle {
    CardLifecycle { state, form, replaces: None, replaced_by: None, changed_at_ms: 0, shipping_returned_at_ms: None, wallet_tokens_awaiting_step_up: Vec::new() }
}

/// Every (state, action) pair for both forms: which are admitted. Written
/// out as the lifecycle in the issue states it, not derived from the code.
#[test]
fn every_command_in_every_state_is_admitted_or_refused_before_a_vendor_call() {
    use CardAction as A;
    use CardState as S;
    let physical: &[(S, &[A])] = &[
        (S::Ordered, &[A::Terminate]),
        (S::Issued, &[A::Activate, A::SetPin, A::Terminate, A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::Shipped, &[A::Activate, A::SetPin, A::Replace, A::Terminate, A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::PendingActivation, &[A::Activate, A::SetPin, A::Replace, A::Terminate, A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::Active, &[A::SetPin, A::Suspend, A::Replace, A::Terminate, A::ProvisionToken, A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::Suspended, &[A::SetPin, A::Reinstate, A::Replace, A::Terminate, A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::Terminated, &[A::OpenDispute, A::SubmitDisputeEvidence]),
        (S::Expired, &[A::OpenDispute, A::SubmitDisputeEvidence]),
    ];
    let all = [
        A::Issue,
        A::Activate,
        A::SetPin,
        A::Suspend,
        A::Reinstate,
        A::Replace,
        A::Terminate,
        A::ProvisionToken,
        A::OpenDispute,
        A::SubmitDisputeEvidence,
    ];
    for (state, allowed) in physical {
        for action in all {
            let got = CardLifecycle::admit(Some(&card(CardForm::Physical, *state)), action);
            match (allowed.contains(&action), got) {
                (true, Ok(())) => {}
                (false, Err(r)) => {
                    let want = if action == A::Issue { CardRefusal::CardExists } else { CardRefusal::IllegalTransition };
                    assert_eq!(r.code, want, "{action:?} on {state:?}");
                    assert!(r.message.contains(action.as_str()) || action == A::Issue, "{}", r.message);
                }
                (want, got) => panic!("{action:?} on a physical {state:?}: expected allowed={want}, got {got:?}"),
            }
        }
    }
    // A virtual card is activated from ISSUED only (it never ships).
    for state in [S::Shipped, S::PendingActivation, S::Active] {
        assert!(CardLifecycle::admit(Some(&card(CardForm::Virtual, state)), A::Activate).is_err(), "{state:?}");
    }
    assert!(CardLifecycle::admit(Some(&card(CardForm::Virtual, S::Issued)), A::Activate).is_ok());
    // Without a card only ISSUE is admitted.
    for action in all {
        let got = CardLifecycle::admit(None, action);
        assert_eq!(got.is_ok(), action == A::Issue, "{action:?}");
        if let Err(r) = got {
            assert_eq!(r.code, CardRefusal::CardNotFound);
        }
    }
    // A card already replaced is not replaced twice.
    let mut replaced = card(CardForm::Physical, S::Active);
    replaced.replaced_by = Some("card-2".into());
    assert!(CardLifecycle::admit(Some(&replaced), A::Replace).is_err());
}

#[test]
fn issued_twice_and_shipped_before_issued_publish_one_event_each_in_lifecycle_order() {
    let mut c = CardLifecycle::ordered(CardForm::Physical, None, 0);
    let mut events = Vec::new();
    let mut from = c.state;
    // The processor's callbacks: SHIPPED overtakes ISSUED, ISSUED comes twice.
    for (to, at) in [(CardState::Shipped, 20), (CardState::Issued, 10), (CardState::Issued, 10), (CardState::Shipped, 20)] {
        if let Observed::Entered(states) = c.observe(to, at) {
            for s in states {
                events.push(event_for(s, from).expect("allowed"));
                from = s;
            }
        }
    }
    assert_eq!(events, vec![CardEventKind::CardIssued, CardEventKind::CardShipped]);
    assert_eq!(events.iter().filter(|e| e.notifies_cardholder()).count(), 2, "one notification per real change");
}

#[test]
fn suspend_and_reinstate_are_ordered_by_the_processors_clock() {
    let mut c = card(CardForm::Virtual, CardState::Active);
    assert_eq!(c.observe(CardState::Suspended, 100), Observed::Entered(vec![CardState::Suspended]));
    // The reinstatement at 200 arrives, then the suspension at 150 arrives late.
    assert_eq!(c.observe(CardState::Active, 200), Observed::Entered(vec![CardState::Active]));
    assert_eq!(c.observe(CardState::Suspended, 150), Observed::Unchanged);
    assert_eq!(c.state, CardState::Active);
    assert_eq!(event_for(CardState::Active, CardState::Suspended), Some(CardEventKind::CardReinstated));
}

#[test]
fn a_terminated_card_never_comes_back_and_a_virtual_card_never_ships() {
    let mut c = card(CardForm::Physical, CardState::Terminated);
    assert_eq!(c.observe(CardState::Active, i64::MAX), Observed::Contradiction { from: CardState::Terminated, to: CardState::Active });
    assert_eq!(c.observe(CardState::Terminated, 1), Observed::Unchanged);
    let mut v = card(CardForm::Virtual, CardState::Issued);
    assert_eq!(v.observe(CardState::Shipped, 1), Observed::Contradiction { from: CardState::Issued, to: CardState::Shipped });
    assert_eq!(v.state, CardState::Issued);
}

/// Random deliveries of a physical card's callbacks (each duplicated,
/// reordered, delayed): the events are always the issuance path in order,
/// each once, ending where the latest callback says. Seeded, reproducible.
#[test]
fn any_delivery_order_of_issuance_callbacks_yields_the_path_once_in_order() {
    let path = [CardState::Issued, CardState::Shipped, CardState::PendingActivation, CardState::Active];
    let mut seed: u64 = 0x5eed_ca4d;
    let mut next = move |n: usize| {
        // xorshift64*: no dependency, the same sequence everywhere.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    };
    for round in 0..2_000 {
        let sent = 1 + next(path.len());
        let mut deliveries: Vec<(CardState, i64)> = path[..sent].iter().enumerate().map(|(i, s)| (*s, i as i64 * 10)).collect();
        for _ in 0..next(4) {
            let d = deliveries[next(deliveries.len())];
            deliveries.push(d);
        }
        for i in (1..deliveries.len()).rev() {
            deliveries.swap(i, next(i + 1));
        }
        let mut c = CardLifecycle::ordered(CardForm::Physical, None, 0);
        let mut from = c.state;
        let mut events = Vec::new();
        for (to, at) in &deliveries {
            if let Observed::Entered(states) = c.observe(*to, *at) {
                for s in states {
                    events.push(event_for(s, from).expect("allowed"));
                    from = s;
                }
            }
        }
        let want = &[CardEventKind::CardIssued, CardEventKind::CardShipped, CardEventKind::CardPendingActivation, CardEventKind::CardActivated][..sent];
        assert_eq!(events, want, "round {round}: deliveries {deliveries:?}");
        assert_eq!(c.state, path[sent - 1]);
    }
}

#[test]
fn a_pin_is_never_accepted_in_clear() {
    let mut cmd = command(CardAction::SetPin);
    cmd.pin = Some(PinSpec { encrypted_pin_block: Some("1234".into()), hosted_flow_token: None });
    assert!(cmd.validate().expect_err("refused").contains("never a PIN"));
    cmd.pin = Some(PinSpec { encrypted_pin_block: None, hosted_flow_token: Some("483920".into()) });
    assert!(cmd.validate().expect_err("refused").contains("looks like a PIN"));
    cmd.pin = Some(PinSpec { encrypted_pin_block: Some("0412AC89FF3E21D7".into()), hosted_flow_token: None });
    assert_eq!(cmd.validate(), Ok(()));
    cmd.pin = Some(PinSpec { encrypted_pin_block: Some("0412AC89FF3E21D7".into()), hosted_flow_token: Some("pin_flow_abc".into()) });
    assert!(cmd.validate().is_err(), "exactly one form");
}

#[test]
fn a_physical_card_needs_somewhere_to_ship() {
    let mut cmd = command(CardAction::Issue);
    cmd.issue = Some(IssueSpec { form: CardForm::Physical, product: "debit-classic".into(), cardholder_ref: "cust-9".into(), shipping: None });
    assert!(cmd.validate().expect_err("refused").contains("issue.shipping"));
}

#[test]
fn a_wallet_token_is_told_provisioned_once_at_approval_or_after_its_step_up() {
    use crate::card::WalletTokenWord as W;
    use crate::card_event::CardEventKind as K;
    let mut c = card(CardForm::Virtual, CardState::Active);
    assert_eq!(c.wallet_token(Some("green"), W::Approved), Some(K::TokenProvisioned));
    assert_eq!(c.wallet_token(Some("green"), W::Activated), None, "approved tokens were told with their decision");
    assert_eq!(c.wallet_token(Some("yellow"), W::StepUpRequired), Some(K::TokenStepUpRequired));
    assert_eq!(c.wallet_token(Some("yellow"), W::StepUpRequired), None, "one step-up request per token");
    assert_eq!(c.wallet_token(Some("other"), W::Activated), None);
    assert_eq!(c.wallet_token(Some("yellow"), W::Activated), Some(K::TokenProvisioned), "activated after its step-up");
    assert_eq!(c.wallet_token(Some("yellow"), W::Activated), None, "told once");
    assert!(c.wallet_tokens_awaiting_step_up.is_empty());
    assert_eq!(c.wallet_token(None, W::StepUpRequired), Some(K::TokenStepUpRequired));
    assert_eq!(c.wallet_token(None, W::Activated), None, "an activation without a token id cannot be matched");
}

#[test]
fn rows_stored_before_wallet_tokens_were_kept_still_read() {
    let old = r#"{"state":"ACTIVE","form":"VIRTUAL","replaces":null,"replaced_by":null,"changed_at_ms":5}"#;
    let c: CardLifecycle = serde_json::from_str(old).expect("an old row");
    assert!(c.wallet_tokens_awaiting_step_up.is_empty());
    assert!(!serde_json::to_string(&c).expect("json").contains("wallet_tokens"), "nothing new written while none awaits");
}
