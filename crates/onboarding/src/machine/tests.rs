//! Every path of the machine, without I/O.

use super::*;
use switchyard_canonical::aml::{AmlMatch, ScreeningList};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycReason, Person};
use switchyard_canonical::onboarding::OnboardingAction;
use switchyard_canonical::{ErrorClass, ErrorCode};

const T0: i64 = 1_000_000;

fn limits() -> Limits {
    Limits { max_kyc_attempts: 2, max_resends: 1, step_timeout_ms: 100, evidence_timeout_ms: 1_000, decision_timeout_ms: 10_000 }
}

fn applicant() -> Applicant {
    Applicant {
        person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: Some("ada@example.com".into()) },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://1/front".into(), back_ref: None },
        selfie_ref: Some("doc://1/selfie".into()),
        nationality: Some("GB".into()),
        phone: None,
        ip: Some("192.0.2.1".into()),
        session_id: Some("sess-1".into()),
    }
}

fn started() -> Transition {
    let cmd = OnboardingCommand {
        subject_id: "app-1".into(),
        idempotency_key: "start-1".into(),
        flow_id: "f1".into(),
        action: OnboardingAction::Start,
        applicant: Some(applicant()),
        evidence: None,
        decision: None,
        requested_at_ms: T0,
    };
    start(&cmd, applicant(), "corr-1", &limits(), T0)
}

fn kyc_cmd(t: &Transition) -> KycCommand {
    match &t.commands[..] {
        [StepCommand::Kyc(c)] => c.clone(),
        other => panic!("expected one KYC command, got {other:?}"),
    }
}

fn kyc(flow: &Flow, attempt: i32, status: KycStatus) -> Input {
    let mut cmd = kyc_cmd(&started());
    cmd.idempotency_key = step_key(&flow.flow_id, FlowStep::Kyc, attempt);
    let mut o = KycOutcome::new(&cmd, status);
    if matches!(status, KycStatus::StepUpRequired) {
        o.reasons = vec![KycReason::AdditionalDocumentRequired];
    }
    if matches!(status, KycStatus::Failed | KycStatus::Rejected) {
        o.error = Some(OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: "bad".into() });
    }
    Input::Kyc(o)
}

fn aml(flow: &Flow, status: AmlStatus) -> Input {
    let StepCommand::Aml(cmd) = command_for(&Flow { step: FlowStep::Aml, attempt: 1, ..flow.clone() }, T0) else { panic!("aml") };
    let mut o = AmlOutcome::new(&cmd, status);
    if matches!(status, AmlStatus::PotentialMatch | AmlStatus::ConfirmedMatch) {
        o.matches = vec![AmlMatch {
            list: ScreeningList::Sanctions,
            source: "ofac-sdn".into(),
            entity_id: "e1".into(),
            matched_name: "Ada Lovelace".into(),
            score: 0.9,
            matched_fields: vec![],
        }];
    }
    Input::Aml(o)
}

fn fraud(flow: &Flow, decision: Option<FraudDecision>) -> Input {
    let StepCommand::Fraud(cmd) = command_for(&Flow { step: FlowStep::Fraud, attempt: 1, ..flow.clone() }, T0) else { panic!("fraud") };
    let status = if decision.is_some() { FraudStatus::Scored } else { FraudStatus::Failed };
    let mut o = FraudOutcome::new(&cmd, status, decision);
    o.score = Some(0.5);
    Input::Fraud(o)
}

fn decide(step: FlowStep, verdict: ManualVerdict) -> Input {
    Input::Decision(ManualDecision { step, verdict, reviewer: "analyst-7".into(), note: None })
}

/// Builds an input from the flow as it stands.
type Feed<'a> = &'a dyn Fn(&Flow) -> Input;

/// Applies inputs in order, each at `T0 + 1`, and returns the last transition.
fn run(inputs: &[Feed<'_>]) -> (Transition, Vec<OnboardingEvent>) {
    let mut t = started();
    let mut events = vec![t.event.clone()];
    for input in inputs {
        let i = input(&t.flow);
        t = apply(&t.flow, &i, &limits(), T0 + 1).unwrap_or_else(|e| panic!("{i:?} ignored in {:?}: {e:?}", t.flow.state));
        events.push(t.event.clone());
    }
    (t, events)
}

fn to_aml(f: &Flow) -> Input {
    kyc(f, 1, KycStatus::Approved)
}

fn to_fraud(f: &Flow) -> Input {
    aml(f, AmlStatus::Clear)
}

#[test]
fn start_sends_the_first_kyc_attempt_with_a_step_key() {
    let t = started();
    assert_eq!((t.flow.state, t.flow.step, t.flow.attempt, t.flow.version), (OnboardingState::KycPending, FlowStep::Kyc, 1, 1));
    let c = kyc_cmd(&t);
    assert_eq!((c.idempotency_key.as_str(), c.flow_id.as_deref(), c.subject_id.as_str()), ("f1.kyc.1", Some("f1"), "app-1"));
    assert_eq!(t.event.previous_state, None);
    assert_eq!((t.event.trigger.as_str(), t.event.event_id.as_str()), ("start", "f1:1"));
    assert_eq!(t.flow.deadline_at_ms, Some(T0 + 100));
    assert_eq!(t.audit[0].action, "onboarding_transition");
}

#[test]
fn step_keys_round_trip_and_reject_other_flows() {
    assert_eq!(parse_step_key("f1", &step_key("f1", FlowStep::Fraud, 3)), Some((FlowStep::Fraud, 3)));
    assert_eq!(parse_step_key("f1", "f10.kyc.1"), None);
    assert_eq!(parse_step_key("f1", "f1.kyc.x"), None);
    assert_eq!(parse_step_key("f1", "f1.card.1"), None);
}

#[test]
fn approve_path_sends_each_step_and_ends_approved() {
    let (t, events) = run(&[&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Allow))]);
    assert_eq!(t.flow.state, OnboardingState::Approved);
    assert_eq!(t.flow.passed, vec![FlowStep::Kyc, FlowStep::Aml, FlowStep::Fraud]);
    assert!(t.event.terminal && t.event.compensate.is_empty() && t.commands.is_empty());
    assert_eq!(t.flow.deadline_at_ms, None);
    let states: Vec<_> = events.iter().map(|e| e.state).collect();
    use OnboardingState as S;
    assert_eq!(states, [S::KycPending, S::AmlPending, S::FraudPending, S::Approved]);
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let mid = run(&[&to_aml]).0;
    assert!(matches!(&mid.commands[..], [StepCommand::Aml(c)] if c.idempotency_key == "f1.aml.1" && c.subject.country.as_deref() == Some("GB")));
    let last = run(&[&to_aml, &to_fraud]).0;
    assert!(matches!(&last.commands[..], [StepCommand::Fraud(c)] if c.idempotency_key == "f1.fraud.1" && c.event == FraudEvent::Onboarding));
}

#[test]
fn step_up_loops_back_to_kyc_with_the_new_evidence_then_is_bounded() {
    let evidence = Evidence {
        document: IdDocument { kind: DocumentKind::DrivingLicence, issuing_country: "GBR".into(), front_ref: "doc://2/front".into(), back_ref: Some("doc://2/back".into()) },
        selfie_ref: None,
    };
    let ev = evidence.clone();
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::StepUpRequired), &move |_| Input::Evidence(ev.clone())]);
    assert_eq!((t.flow.state, t.flow.attempt), (OnboardingState::KycPending, 2));
    let c = kyc_cmd(&t);
    assert_eq!(c.idempotency_key, "f1.kyc.2");
    assert_eq!(c.document, evidence.document);
    assert_eq!(c.selfie_ref.as_deref(), Some("doc://1/selfie"), "a selfie not replaced is kept");
    // The second attempt is the last (max 2): another step-up rejects.
    let ev = evidence.clone();
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::Resubmit), &move |_| Input::Evidence(ev.clone()), &|f| kyc(f, 2, KycStatus::StepUpRequired)]);
    assert_eq!(t.flow.state, OnboardingState::Rejected);
    assert!(t.event.reason.as_deref().is_some_and(|r| r.contains("kyc_attempts_exhausted")));
    let ev = evidence;
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::StepUpRequired), &move |_| Input::Evidence(ev.clone()), &|f| kyc(f, 2, KycStatus::Approved)]);
    assert_eq!((t.flow.state, t.flow.step, t.flow.attempt), (OnboardingState::AmlPending, FlowStep::Aml, 1));
}

#[test]
fn every_terminal_state_is_reached() {
    use OnboardingState as S;
    let cases: Vec<(Vec<Feed<'_>>, S, Vec<FlowStep>)> = vec![
        (vec![&|f| kyc(f, 1, KycStatus::Declined)], S::Rejected, vec![]),
        (vec![&|f| kyc(f, 1, KycStatus::Failed)], S::Failed, vec![]),
        (vec![&to_aml, &|f| aml(f, AmlStatus::ConfirmedMatch)], S::ComplianceHold, vec![]),
        (vec![&to_aml, &|f| aml(f, AmlStatus::Rejected)], S::Failed, vec![FlowStep::Kyc]),
        (vec![&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Block))], S::FraudBlocked, vec![FlowStep::Kyc, FlowStep::Aml]),
        (vec![&to_aml, &to_fraud, &|f| fraud(f, None)], S::Failed, vec![FlowStep::Kyc, FlowStep::Aml]),
        (vec![&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Allow))], S::Approved, vec![]),
    ];
    for (inputs, state, compensate) in cases {
        let (t, _) = run(&inputs);
        assert_eq!(t.flow.state, state);
        assert_eq!(t.event.compensate, compensate, "{state:?}");
        assert!(t.event.terminal && t.commands.is_empty());
        let actions: Vec<_> = t.audit.iter().map(|a| a.action).collect();
        assert_eq!(actions.contains(&"compensate"), !compensate.is_empty(), "{state:?}: {actions:?}");
        assert_eq!(actions.contains(&"compliance_hold"), state == S::ComplianceHold);
    }
}

#[test]
fn a_fraud_block_after_kyc_and_aml_passed_compensates_both() {
    let (t, _) = run(&[&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Block))]);
    let comp = t.audit.iter().find(|a| a.action == "compensate").map(|a| a.detail.clone()).unwrap_or_default();
    assert!(comp.contains("\"undo\":[\"kyc\",\"aml\"]"), "{comp}");
}

#[test]
fn potential_match_waits_for_a_manual_decision() {
    use OnboardingState as S;
    let (review, _) = run(&[&to_aml, &|f| aml(f, AmlStatus::PotentialMatch)]);
    assert_eq!(review.flow.state, S::AmlReview);
    assert!(review.commands.is_empty() && !review.event.terminal);
    assert_eq!(review.flow.deadline_at_ms, Some(T0 + 1 + 10_000));
    // A decision about another step, or an outcome, does not move it.
    assert_eq!(apply(&review.flow, &decide(FlowStep::Fraud, ManualVerdict::Approve), &limits(), T0).err(), Some(Ignored::NotAwaited));
    assert_eq!(apply(&review.flow, &aml(&review.flow, AmlStatus::Clear), &limits(), T0).err(), Some(Ignored::NotAwaited));

    let approved = apply(&review.flow, &decide(FlowStep::Aml, ManualVerdict::Approve), &limits(), T0 + 2).expect("applies");
    assert_eq!(approved.flow.state, S::FraudPending);
    assert!(matches!(&approved.commands[..], [StepCommand::Fraud(_)]));
    assert_eq!(approved.event.trigger, "decision:approve");
    assert_eq!(approved.audit[0].action, "manual_decision");
    assert!(approved.audit[0].detail.contains("analyst-7"));

    let rejected = apply(&review.flow, &decide(FlowStep::Aml, ManualVerdict::Reject), &limits(), T0 + 2).expect("applies");
    assert_eq!((rejected.flow.state, rejected.event.compensate.clone()), (S::Rejected, vec![FlowStep::Kyc]));
    let held = apply(&review.flow, &decide(FlowStep::Aml, ManualVerdict::Hold), &limits(), T0 + 2).expect("applies");
    assert_eq!((held.flow.state, held.event.compensate.len()), (S::ComplianceHold, 0));
}

#[test]
fn kyc_manual_review_and_fraud_review_take_decisions_too() {
    use OnboardingState as S;
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::ManualReview), &|_| decide(FlowStep::Kyc, ManualVerdict::Approve)]);
    assert_eq!(t.flow.state, S::AmlPending);
    let (t, _) = run(&[&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Review)), &|_| decide(FlowStep::Fraud, ManualVerdict::Approve)]);
    assert_eq!(t.flow.state, S::Approved);
    let (t, _) = run(&[&to_aml, &to_fraud, &|f| fraud(f, Some(FraudDecision::Review)), &|_| decide(FlowStep::Fraud, ManualVerdict::Reject)]);
    assert_eq!((t.flow.state, t.event.compensate.len()), (S::Rejected, 2));
}

#[test]
fn late_reordered_and_foreign_outcomes_are_not_awaited() {
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::StepUpRequired)]);
    // The step-up's outcome again, once the flow waits for evidence.
    assert_eq!(apply(&t.flow, &kyc(&t.flow, 1, KycStatus::StepUpRequired), &limits(), T0).err(), Some(Ignored::NotAwaited));
    // An answer for an attempt never requested.
    let pending = started();
    assert_eq!(apply(&pending.flow, &kyc(&pending.flow, 2, KycStatus::Approved), &limits(), T0).err(), Some(Ignored::NotAwaited));
    // An AML outcome while KYC is pending; a KYC outcome of another flow.
    assert_eq!(apply(&pending.flow, &aml(&pending.flow, AmlStatus::Clear), &limits(), T0).err(), Some(Ignored::NotAwaited));
    let Input::Kyc(mut other) = kyc(&pending.flow, 1, KycStatus::Approved) else { unreachable!() };
    other.flow_id = Some("f2".into());
    assert_eq!(apply(&pending.flow, &Input::Kyc(other), &limits(), T0).err(), Some(Ignored::NotAwaited));
    // A KYC approval arriving after the flow moved to AML.
    let (moved, _) = run(&[&to_aml]);
    assert_eq!(apply(&moved.flow, &kyc(&moved.flow, 1, KycStatus::Declined), &limits(), T0).err(), Some(Ignored::NotAwaited));
}

#[test]
fn terminal_flows_ignore_everything() {
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::Declined)]);
    for input in [kyc(&t.flow, 1, KycStatus::Approved), Input::Timeout, decide(FlowStep::Kyc, ManualVerdict::Approve)] {
        assert_eq!(apply(&t.flow, &input, &limits(), T0 + 1_000_000).err(), Some(Ignored::Finished));
    }
}

#[test]
fn a_worker_step_past_its_deadline_is_resent_under_the_same_key_then_expires() {
    use OnboardingState as S;
    let (aml_pending, _) = run(&[&to_aml]);
    let due = aml_pending.flow.deadline_at_ms.expect("deadline");
    assert_eq!(apply(&aml_pending.flow, &Input::Timeout, &limits(), due - 1).err(), Some(Ignored::NotDue));
    let resent = apply(&aml_pending.flow, &Input::Timeout, &limits(), due).expect("resend");
    assert_eq!((resent.flow.state, resent.flow.resends, resent.flow.attempt), (S::AmlPending, 1, 1));
    assert!(matches!(&resent.commands[..], [StepCommand::Aml(c)] if c.idempotency_key == "f1.aml.1"));
    assert_eq!(resent.flow.deadline_at_ms, Some(due + 100));
    assert_eq!(resent.event.trigger, "timeout");
    // The resent command's outcome still applies: same step, same attempt.
    let clear = apply(&resent.flow, &aml(&resent.flow, AmlStatus::Clear), &limits(), due + 1).expect("applies");
    assert_eq!((clear.flow.state, clear.flow.resends), (S::FraudPending, 0));
    // One resend allowed: the next deadline expires the flow, compensating KYC.
    let expired = apply(&resent.flow, &Input::Timeout, &limits(), due + 100).expect("expires");
    assert_eq!((expired.flow.state, expired.event.compensate.clone()), (S::Expired, vec![FlowStep::Kyc]));
}

#[test]
fn waiting_for_a_person_expires_without_resending() {
    let (t, _) = run(&[&|f| kyc(f, 1, KycStatus::StepUpRequired)]);
    let due = t.flow.deadline_at_ms.expect("deadline");
    assert_eq!(due, T0 + 1 + 1_000);
    let expired = apply(&t.flow, &Input::Timeout, &limits(), due).expect("expires");
    assert_eq!(expired.flow.state, OnboardingState::Expired);
    assert!(expired.commands.is_empty() && expired.event.compensate.is_empty(), "nothing had passed");
}

#[test]
fn versions_grow_by_one_and_event_ids_follow_them() {
    let (_, events) = run(&[&to_aml, &|f| aml(f, AmlStatus::PotentialMatch), &|_| decide(FlowStep::Aml, ManualVerdict::Approve)]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as i64 + 1);
        assert_eq!(e.event_id, format!("f1:{}", i + 1));
        if i > 0 {
            assert_eq!(e.previous_state, Some(events[i - 1].state));
        }
    }
}
