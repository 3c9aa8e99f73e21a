//! A public token exchange whose answer is lost. Real broker, real
//! PostgreSQL, the Plaid simulator over HTTP.
//!
//! Plaid's public token is single use and no endpoint returns an item's
//! access token again, so an exchange Plaid executed but whose answer never
//! arrived cannot be finished: the retried exchange gets
//! `INVALID_PUBLIC_TOKEN`. The worker must then look the Link session up
//! (`/link/token/get`), park the consent for manual repair naming it (a
//! `manual_repair` outcome, an audit row, the command in the DLQ), never
//! answer CONSENT_ACTIVE without a token and never a generic error; a
//! redelivered command is answered the same without calling Plaid again.
//!
//! A public token that is simply not the hand-off's (its first exchange
//! refused, no session produced it) is the product's mistake: a permanent
//! failure, nothing parked.

#[allow(dead_code)] // shared with openbanking.rs
#[path = "openbanking/support.rs"]
mod support;

use anyhow::{ensure, Result};
use std::time::Duration;
use support::{complete, create, Stack};
use switchyard_canonical::openbanking_consent::ConsentState;
use switchyard_canonical::openbanking_outcome::OpenBankingKind;
use switchyard_canonical::{ErrorClass, ErrorCode};
use switchyard_e2e::logs::captured_logs;
use switchyard_e2e::TopicReader;

const EXCHANGE: &str = "/item/public_token/exchange";
const PARKED: &str = "consent parked for manual repair";

fn consent_id() -> String {
    format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_exchange_answer_parks_the_consent_naming_the_link_session() -> Result<()> {
    let _ = captured_logs();
    let stack = Stack::start("ob-repair").await?;
    let dlq = TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.commands.v1.dlq"))?;
    let consent = consent_id();
    let created = stack.ask(&create(&consent, &format!("{consent}-create"))).await?;
    let link_token = created.handoff.clone().map(|h| h.value).unwrap_or_default();
    let public = stack.plaid.complete_link(&link_token).ok_or_else(|| anyhow::anyhow!("link token refused"))?;
    let sessions = stack.plaid.link_sessions(&link_token);
    ensure!(sessions.len() == 1, "one Link session: {sessions:?}");
    let (session_id, lost_item) = sessions[0].clone();

    // Plaid executes the exchange; its answer never arrives.
    stack.plaid.lose_exchange_answers(1);
    let key = format!("{consent}-complete");
    let command = complete(&consent, &key, &public);
    let answer = stack.ask(&command).await?;
    assert_eq!(answer.kind, OpenBankingKind::Failed, "never CONSENT_ACTIVE without a token: {answer:?}");
    let error = answer.error.clone().ok_or_else(|| anyhow::anyhow!("no error: {answer:?}"))?;
    assert_eq!(error.class, ErrorClass::ManualRepair, "parked for a person, not a generic error: {error:?}");
    assert!(error.message.starts_with(PARKED), "{}", error.message);
    assert!(error.message.contains(&session_id), "names the Link session {session_id}: {}", error.message);
    assert!(!error.message.contains(&public), "the public token is never echoed");
    assert_eq!(answer.consent_state, Some(ConsentState::AwaitingUser), "the consent holds no grant");
    assert_eq!(answer.provider_reference, None, "no item id: Plaid's session results name none");
    assert_eq!(stack.plaid.calls(EXCHANGE), 2, "the lost exchange and one retry, refused as spent");
    assert_eq!(stack.plaid.calls("/link/token/get"), 1, "the session looked up once");

    // In the DLQ for ops, with the same reason.
    let dead = dlq.collect(1, Duration::from_secs(30)).await?;
    let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains(PARKED) && reason.contains(&session_id), "dlq-reason: {reason}");
    assert_eq!(String::from_utf8_lossy(&dead[0].key), consent);

    // In the audit trail, naming the session, the institution and the accounts.
    let worker = stack.worker.as_ref().expect("worker");
    worker.store.flush_audit().await;
    let trail = worker.store.audit_trail(&[consent.as_str()]).await?;
    let parked: Vec<_> = trail.iter().filter(|a| a.action == "openbanking_consent_parked").collect();
    assert_eq!(parked.len(), 1, "{trail:?}");
    let detail: serde_json::Value = serde_json::from_str(&parked[0].detail)?;
    assert_eq!(detail["link_session_id"].as_str(), Some(session_id.as_str()));
    assert_eq!(detail["earlier_attempt_unknown"].as_bool(), Some(true));
    assert_eq!(detail["account_ids"].as_array().map(Vec::len), Some(2), "{detail}");
    assert!(!parked[0].detail.contains(&public));

    // A redelivered command is answered the same, without Plaid.
    stack.send(&command).await?;
    let again = stack.answer_to(&key).await?;
    assert!(again.replayed, "{again:?}");
    assert_eq!(again.error.as_ref().map(|e| e.class), Some(ErrorClass::ManualRepair));
    assert_eq!(stack.plaid.calls(EXCHANGE), 2, "never exchanged again");
    let events = stack.events(Duration::from_secs(1)).await?;
    assert!(
        events.iter().filter(|e| e.consent_id == consent).all(|e| e.kind != OpenBankingKind::ConsentActive),
        "no CONSENT_ACTIVE event: {events:?}"
    );
    // The simulator did create the item: the repair is real work for ops.
    assert!(!lost_item.is_empty());

    // A token that is not this hand-off's, refused on its first exchange.
    let other = consent_id();
    stack.ask(&create(&other, &format!("{other}-create"))).await?;
    let refused = stack.ask(&complete(&other, &format!("{other}-complete"), "public-sandbox-never-issued")).await?;
    assert_eq!(refused.kind, OpenBankingKind::Failed, "{refused:?}");
    let e = refused.error.clone().ok_or_else(|| anyhow::anyhow!("no error: {refused:?}"))?;
    assert_eq!((e.class, e.code), (ErrorClass::Permanent, ErrorCode::InvalidRequest), "{e:?}");
    assert!(!e.message.starts_with(PARKED), "nothing to repair: {}", e.message);
    assert!(dlq.read_up_to(1, Duration::from_secs(2)).await?.is_empty(), "not dead-lettered");
    stack.stop().await
}
