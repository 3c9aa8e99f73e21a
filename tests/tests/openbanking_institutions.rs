//! Institution health as routing input, end to end (real broker, real
//! PostgreSQL, the Plaid simulator over HTTP): an institution that keeps
//! answering INSTITUTION_DOWN opens its own breaker; while it is open a
//! command for it is answered INSTITUTION_UNAVAILABLE with the cool-down
//! as retry-after and no call reaches Plaid (counted at the simulator);
//! another institution behind the same Plaid is unaffected; after the
//! cool-down exactly one command goes through as the probe: a failed probe
//! reopens it, a good one closes it. The state is on `/metrics`.

#[allow(dead_code)] // shared with openbanking.rs
#[path = "openbanking/support.rs"]
mod support;

use anyhow::{Context, Result};
use std::time::Duration;
use support::{refresh, Stack, INSTITUTION, INSTITUTION_BREAKER_CALLS, INSTITUTION_COOL_DOWN_MS};
use switchyard_canonical::openbanking_outcome::OpenBankingKind;

const OTHER_INSTITUTION: &str = "ins_3";

fn consent_id() -> String {
    format!("con-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

fn state_metric(stack: &Stack, institution: &str) -> Result<String> {
    let text = stack.worker.as_ref().context("worker")?.metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("switchyard_institution_circuit_state") && l.contains(&format!("institution=\"{institution}\"")))
        .map(str::to_owned);
    Ok(line.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_institution_that_keeps_failing_is_answered_without_plaid_until_one_probe_finds_it_back() -> Result<()> {
    let stack = Stack::start("ob-institution-breaker").await?;
    let (down, other) = (consent_id(), consent_id());
    stack.grant(&down).await?;
    stack.grant_at(&other, OTHER_INSTITUTION).await?;
    stack.plaid.institution_down(INSTITUTION, Duration::from_secs(300));

    // N failures, each a real call to Plaid.
    for i in 0..INSTITUTION_BREAKER_CALLS {
        let before = stack.plaid.requests();
        let answer = stack.ask(&refresh(&down, &format!("{down}-down-{i}"))).await?;
        assert_eq!(answer.kind, OpenBankingKind::InstitutionUnavailable, "{answer:?}");
        assert_eq!(stack.plaid.requests(), before + 1, "failure {i} was a Plaid call");
    }
    assert!(state_metric(&stack, INSTITUTION)?.ends_with(" 1"), "open on /metrics: {:?}", state_metric(&stack, INSTITUTION)?);

    // Open: answered at once, without Plaid, with the cool-down left.
    let before = stack.plaid.requests();
    let fast = stack.ask(&refresh(&down, &format!("{down}-open"))).await?;
    assert_eq!((fast.kind, fast.attempts), (OpenBankingKind::InstitutionUnavailable, 0), "{fast:?}");
    let retry_after = fast.retry_after_ms.context("a retry-after")?;
    assert!(retry_after > 0 && retry_after <= INSTITUTION_COOL_DOWN_MS as i64, "retry-after is the cool-down left: {retry_after}");
    assert_eq!(stack.plaid.requests(), before, "no call reached Plaid while the breaker is open");

    // The same Plaid, another bank: unaffected.
    let fine = stack.ask(&refresh(&other, &format!("{other}-r"))).await?;
    assert_eq!(fine.kind, OpenBankingKind::DataRefreshed, "{fine:?}");
    assert!(state_metric(&stack, OTHER_INSTITUTION)?.is_empty() || state_metric(&stack, OTHER_INSTITUTION)?.ends_with(" 0"));

    // Cool-down over, still down: one probe goes to Plaid, fails, reopens.
    tokio::time::sleep(Duration::from_millis(INSTITUTION_COOL_DOWN_MS + 300)).await;
    let before = stack.plaid.requests();
    let probe = stack.ask(&refresh(&down, &format!("{down}-probe-1"))).await?;
    assert_eq!((probe.kind, stack.plaid.requests()), (OpenBankingKind::InstitutionUnavailable, before + 1), "the probe called Plaid: {probe:?}");
    let again = stack.ask(&refresh(&down, &format!("{down}-after-probe-1"))).await?;
    assert_eq!((again.kind, again.attempts, stack.plaid.requests()), (OpenBankingKind::InstitutionUnavailable, 0, before + 1), "a failed probe reopens: {again:?}");

    // Back up; after the cool-down the probe succeeds and closes it.
    stack.plaid.institution_down(INSTITUTION, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(INSTITUTION_COOL_DOWN_MS + 300)).await;
    let back = stack.ask(&refresh(&down, &format!("{down}-probe-2"))).await?;
    assert_eq!(back.kind, OpenBankingKind::DataRefreshed, "{back:?}");
    assert!(state_metric(&stack, INSTITUTION)?.ends_with(" 0"), "closed on /metrics: {:?}", state_metric(&stack, INSTITUTION)?);
    let next = stack.ask(&refresh(&down, &format!("{down}-closed"))).await?;
    assert_eq!(next.kind, OpenBankingKind::DataRefreshed, "{next:?}");
    stack.stop().await
}
