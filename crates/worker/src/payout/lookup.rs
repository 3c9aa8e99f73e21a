//! A payout whose key the vendor may have forgotten: look, never create.
//!
//! Vendors keep idempotency keys for a while (Stripe 24 h, Adyen at least 7
//! days, `idempotency_key_retention` in the partner catalog). Past that, a
//! create under the old key executes again, so a claim that old is only
//! looked up by the reference we sent (Stripe: the payout's metadata; Adyen:
//! the transfer reference). Found: its state is the outcome. Not found: the
//! vendor never paid it, or it cannot say; either way a person decides, with
//! everything needed in the dead letter.

use super::{dead_letter, fenced_out, Execution, PayoutHandler, Route, Vendor};
use crate::attempt::AttemptLease;
use std::time::{Duration, Instant};
use switchyard_adapters::CallContext;
use switchyard_bus::Failure;
use switchyard_canonical::{now_ms, ErrorClass, PayoutCommand};

impl PayoutHandler {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn look_up<'r>(
        &self,
        command: &PayoutCommand,
        vendor: &Vendor,
        key_since_ms: i64,
        provider_key: &str,
        ctx: &CallContext,
        route: &mut Option<Route<'r>>,
        lease: &mut AttemptLease,
    ) -> Execution {
        if let Err(fenced) = lease.fence(&self.store).await {
            return fenced_out(fenced);
        }
        let provider = &vendor.adapter;
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(provider.find(command, key_since_ms, ctx)).await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(Some(_)) => "found".to_owned(),
            Ok(None) => "not_found".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(provider.name(), "find", &label, elapsed);
        let as_call = match &result {
            Ok(Some(found)) => Ok(found.clone()),
            Ok(None) => Err(switchyard_adapters::AdapterError::new(ErrorClass::ManualRepair, switchyard_canonical::ErrorCode::Unknown, "no payout with this reference")),
            Err(e) => Err(e.clone()),
        };
        self.audit_call(command, provider.name(), "find", &as_call, &reply, elapsed, ctx, route.take()).await;
        let age = Duration::from_millis(u64::try_from(now_ms() - key_since_ms).unwrap_or(0));
        match result {
            Ok(Some(found)) => Execution::Final(self.outcome(command, provider, found, 1)),
            Ok(None) => Execution::Later(dead_letter(&format!(
                "{provider} keeps idempotency keys for {retention:?}; key {key:?} was assigned {age:?} ago and {provider} shows no payout \
                 with reference {payout:?} since then. Not re-sent: a create now could pay twice. Confirm with {provider}, then \
                 answer core banking (paid: post it; never paid: re-send as a new payout with a new key)",
                provider = provider.name(),
                retention = vendor.key_retention,
                key = provider_key,
                payout = command.payout_id,
            ))),
            Err(e) if e.class == ErrorClass::ManualRepair => Execution::Later(dead_letter(&e.to_string())),
            Err(e) => Execution::Later(Failure::Retry {
                reason: format!("looking the payout up at {} failed: {e}", provider.name()),
                delay: Duration::from_millis(self.retry.retry_topic_delay_ms),
            }),
        }
    }
}
