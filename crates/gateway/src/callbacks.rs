//! Signed callbacks to consuming teams: when the projection writes a
//! terminal state of a resource whose creating team has a `callback`, one
//! delivery is queued in the store's outbox
//! (`switchyard_store::gateway_callbacks`), and a deliverer in every
//! gateway instance POSTs it with Standard Webhooks headers, the scheme the
//! ingester verifies from vendors, signed by the same code
//! (`switchyard_adapters::webhooks::standard_webhooks_signature`).
//!
//! - Once per `(domain, resource, status)`: the delivery id (`webhook-id`)
//!   is derived from them, so a redelivered or replayed outcome queues
//!   nothing, and every retry carries the same id for the receiver to
//!   deduplicate.
//! - Retries: any answer but a 2xx, a timeout or a refused connection is
//!   retried after an exponential backoff with jitter (`backon`), until the
//!   team's `max_attempts`; then the delivery is marked failed, audited and
//!   counted. The schedule is in the store, so a restart or another
//!   instance carries on where an attempt left off.
//! - Several instances: a delivery is leased to one at a time (see the store).
//! - The body: `{"type": "<resource>.<status>", "timestamp": RFC 3339,
//!   "data": <the view GET answers>}`. No secret, URL or body is logged.

use crate::config::{CallbackConfig, TeamConfig};
use crate::projection::Projected;
use crate::GatewayError;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_canonical::Fingerprint;
use switchyard_store::gateway_callbacks::{Callback, CallbackStore, NewCallback};
use switchyard_store::{AuditEntry, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Each domain's resource name in an event type, and its terminal
/// statuses: the states after which a resource moves no more (or only by a
/// new request), mirroring the canonical `terminal()` of each status type
/// plus the refusals (`rejected`, `failed`) that end a resource before it
/// got a state. The one list a callback is decided by.
pub const TERMINAL: &[(&str, &str, &[&str])] = &[
    ("payouts", "payout", &["paid", "failed", "rejected"]),
    ("kyc", "kyc.check", &["approved", "declined", "rejected", "failed"]),
    ("aml", "aml.screening", &["clear", "confirmed_match", "rejected", "failed"]),
    ("fraud", "fraud.score", &["scored", "rejected", "failed"]),
    ("onboarding", "onboarding.application", &["approved", "rejected", "compliance_hold", "fraud_blocked", "expired", "failed"]),
    ("cards", "card", &["terminated", "expired", "failed", "rejected"]),
    ("openbanking", "openbanking.consent", &["revoked", "expired", "rejected", "failed"]),
    ("openbanking_payments", "openbanking.payment", &["settled", "failed", "rejected"]),
];

/// The event type of `status` of a resource of `domain`, when terminal.
pub fn terminal_event(domain: &str, status: &str) -> Option<String> {
    let (_, noun, statuses) = TERMINAL.iter().find(|(d, _, _)| *d == domain)?;
    statuses.contains(&status).then(|| format!("{noun}.{status}"))
}

/// The `webhook-id` of one terminal state of one resource.
pub fn delivery_id(domain: &str, resource_id: &str, status: &str) -> String {
    format!("msg_{}", &Fingerprint::of_fields(&[domain.as_bytes(), resource_id.as_bytes(), status.as_bytes()]).0[..32])
}

/// A team's endpoint and key. The key never leaves this struct but to sign.
struct Receiver {
    url: reqwest::Url,
    key: Vec<u8>,
    policy: CallbackConfig,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("host", &self.url.host_str()).finish_non_exhaustive()
    }
}

/// Deliveries by team and outcome: `delivered`, `retried`, `failed`.
#[derive(Default)]
pub(crate) struct CallbackMetrics {
    pub(crate) deliveries: Family<Vec<(&'static str, String)>, Counter>,
}

/// The callbacks of one gateway instance.
pub(crate) struct Callbacks {
    store: CallbackStore,
    audit: Store,
    receivers: HashMap<String, Receiver>,
    http: reqwest::Client,
    /// This instance's lease owner name.
    instance: String,
    /// Woken when this instance queued a delivery, so it goes out at once;
    /// others' are found by polling.
    wake: tokio::sync::Notify,
    pub(crate) metrics: CallbackMetrics,
}

/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries claimed, and sent concurrently, at once.
const BATCH: i64 = 32;
pub(crate) const AUDIT_DELIVERED: &str = "gateway_callback_delivered";
pub(crate) const AUDIT_FAILED: &str = "gateway_callback_failed";

impl Callbacks {
    /// Loads every team's callback; a secret that is missing or not
    /// `whsec_<base64>` stops start-up naming its field, never its value.
    pub(crate) async fn load(teams: &[TeamConfig], store: &Store) -> Result<Arc<Self>, GatewayError> {
        let mut receivers = HashMap::new();
        for (i, team) in teams.iter().enumerate() {
            let Some(policy) = &team.callback else { continue };
            let field = format!("teams[{i}].callback.secret");
            let secret = policy.secret.load(&field).map_err(|e| GatewayError::Config(e.0))?;
            let key = switchyard_adapters::webhooks::standard_webhooks_key(secret.expose()).map_err(|e| GatewayError::Config(format!("{field}: {e}")))?;
            let url = policy.url.parse().map_err(|_| GatewayError::Config(format!("teams[{i}].callback.url is not a URL")))?;
            receivers.insert(team.name.clone(), Receiver { url, key, policy: policy.clone() });
        }
        let http = reqwest::Client::builder()
            // A redirect is an answer other than 2xx: retried, never followed
            // to a host the team did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("switchyard-gateway-callbacks")
            .build()
            .map_err(|e| GatewayError::Config(format!("callback client: {e}")))?;
        Ok(Arc::new(Self {
            store: CallbackStore::open(store).await?,
            audit: store.clone(),
            receivers,
            http,
            instance: format!("gateway-{}", switchyard_canonical::CorrelationId::new_random().0),
            wake: tokio::sync::Notify::new(),
            metrics: CallbackMetrics::default(),
        }))
    }

    /// True when `team` gets callbacks, so its resources' owner is recorded.
    pub(crate) fn enabled_for(&self, team: &str) -> bool {
        self.receivers.contains_key(team)
    }

    /// Records the team creating a resource, before its command is published.
    pub(crate) async fn record_owner(&self, domain: &str, resource_id: &str, team: &str) -> Result<(), StoreError> {
        self.store.record_owner(domain, resource_id, team).await
    }

    /// After the projection wrote `state`: queues the owner's delivery if
    /// the state is terminal and the owner has a callback.
    pub(crate) async fn projected(&self, domain: &str, state: &Projected) -> Result<(), StoreError> {
        if self.receivers.is_empty() {
            return Ok(());
        }
        let Some(event) = terminal_event(domain, &state.status) else { return Ok(()) };
        let Some(team) = self.store.owner(domain, &state.resource_id).await? else { return Ok(()) };
        if !self.receivers.contains_key(&team) {
            return Ok(());
        }
        let id = delivery_id(domain, &state.resource_id, &state.status);
        let payload = payload(&event, switchyard_canonical::now_ms(), &state.body);
        let new = NewCallback { delivery_id: &id, domain, resource_id: &state.resource_id, status: &state.status, team: &team, payload: &payload };
        if self.store.enqueue(&new).await? {
            tracing::info!(delivery_id = %id, domain, resource_id = %state.resource_id, team = %team, "callback queued");
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Delivers due callbacks until `shutdown` (a tracked loop: it only
    /// waits when no team has a callback).
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let teams: Vec<String> = self.receivers.keys().cloned().collect();
        if teams.is_empty() {
            shutdown.cancelled().await;
            return Ok(());
        }
        let teams: Vec<&str> = teams.iter().map(String::as_str).collect();
        // Long enough for the slowest receiver's attempt and the store write after it.
        let longest = self.receivers.values().map(|r| r.policy.timeout_ms).max().unwrap_or(10_000);
        let lease_ms = i64::try_from(longest).unwrap_or(60_000) + 10_000;
        loop {
            let due = match self.store.claim_due(&self.instance, &teams, lease_ms, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "callback outbox not read");
                    Vec::new()
                }
            };
            let full = due.len() as i64 == BATCH;
            let mut sending = tokio::task::JoinSet::new();
            for callback in due {
                let this = self.clone();
                sending.spawn(async move { this.deliver(callback).await });
            }
            while sending.join_next().await.is_some() {}
            if full && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One attempt of a leased delivery, and what follows from its answer.
    async fn deliver(&self, callback: Callback) {
        let Some(receiver) = self.receivers.get(&callback.team) else { return };
        let timestamp_s = switchyard_canonical::now_ms() / 1000;
        let signature = switchyard_adapters::webhooks::standard_webhooks_signature(&receiver.key, &callback.delivery_id, timestamp_s, callback.payload.as_bytes());
        let sent = self
            .http
            .post(receiver.url.clone())
            .timeout(Duration::from_millis(receiver.policy.timeout_ms))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &callback.delivery_id)
            .header("webhook-timestamp", timestamp_s.to_string())
            .header("webhook-signature", signature)
            .body(callback.payload.clone())
            .send()
            .await;
        // The status or the kind of transport error only: a reqwest error
        // names the URL, which may carry a token of the team's.
        let failure = match sent {
            Ok(answer) if answer.status().is_success() => None,
            Ok(answer) => Some(format!("status {}", answer.status().as_u16())),
            Err(e) if e.is_timeout() => Some("timeout".to_owned()),
            Err(e) if e.is_connect() => Some("connection failed".to_owned()),
            Err(_) => Some("request failed".to_owned()),
        };
        let (id, team) = (&callback.delivery_id, &callback.team);
        let stored = match &failure {
            None => {
                tracing::info!(delivery_id = %id, team = %team, attempts = callback.attempts, "callback delivered");
                self.count(team, "delivered");
                self.audit(&callback, AUDIT_DELIVERED, None).await;
                self.store.delivered(id, &self.instance).await
            }
            Some(error) => match backoff(&receiver.policy, callback.attempts) {
                Some(wait) => {
                    tracing::warn!(delivery_id = %id, team = %team, attempts = callback.attempts, error = %error, ?wait, "callback not accepted; retrying");
                    self.count(team, "retried");
                    let next = switchyard_canonical::now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
                    self.store.retry_at(id, &self.instance, next, error).await
                }
                None => {
                    tracing::error!(delivery_id = %id, team = %team, attempts = callback.attempts, error = %error, "callback given up");
                    self.count(team, "failed");
                    self.audit(&callback, AUDIT_FAILED, Some(error)).await;
                    self.store.give_up(id, &self.instance, error).await
                }
            },
        };
        match stored {
            Ok(true) => {}
            // Our lease ran out during the attempt and another instance
            // holds it: that one's record stands (the receiver dedups).
            Ok(false) => tracing::warn!(delivery_id = %id, "callback lease lost during the attempt"),
            // The lease runs out and the delivery is tried again.
            Err(e) => tracing::warn!(delivery_id = %id, error = %e, "callback result not stored"),
        }
    }

    fn count(&self, team: &str, outcome: &'static str) {
        self.metrics.deliveries.get_or_create(&vec![("team", team.to_owned()), ("outcome", outcome.to_owned())]).inc();
    }

    async fn audit(&self, callback: &Callback, action: &str, error: Option<&str>) {
        let detail = serde_json::json!({
            "team": callback.team, "domain": callback.domain, "status": callback.status, "attempts": callback.attempts, "error": error,
        })
        .to_string();
        self.audit
            .audit_later(AuditEntry { actor: "gateway", action, subject_id: &callback.resource_id, correlation_id: &callback.delivery_id, detail: &detail })
            .await;
    }
}

/// The wait after the `attempts`-th failed attempt, or `None` once the
/// team's attempts are used up.
fn backoff(policy: &CallbackConfig, attempts: i64) -> Option<Duration> {
    use backon::BackoffBuilder as _;
    let retries = usize::try_from(policy.max_attempts.saturating_sub(1)).unwrap_or(0);
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.min_backoff_ms))
        .with_max_delay(Duration::from_millis(policy.max_backoff_ms))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(retries)
        .build()
        .nth(index)
}

/// The delivered body: Standard Webhooks' recommended envelope around the
/// view `GET` answers (already JSON, embedded as it is).
fn payload(event: &str, at_ms: i64, view: &str) -> String {
    let timestamp = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let quoted = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!("{{\"type\":{},\"timestamp\":{},\"data\":{view}}}", quoted(event), quoted(&timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::aml::AmlStatus;
    use switchyard_canonical::card::CardState;
    use switchyard_canonical::kyc::KycStatus;
    use switchyard_canonical::onboarding::OnboardingState;
    use switchyard_canonical::openbanking_payment::PaymentStatus;

    #[test]
    fn the_terminal_statuses_agree_with_the_canonical_ones() {
        for s in [KycStatus::Approved, KycStatus::Declined, KycStatus::Resubmit, KycStatus::StepUpRequired, KycStatus::ManualReview, KycStatus::Rejected, KycStatus::Failed] {
            assert_eq!(terminal_event("kyc", s.as_str()).is_some(), s.terminal(), "{s:?}");
        }
        for s in [AmlStatus::Clear, AmlStatus::PotentialMatch, AmlStatus::ConfirmedMatch, AmlStatus::Rejected, AmlStatus::Failed] {
            assert_eq!(terminal_event("aml", s.as_str()).is_some(), s.terminal(), "{s:?}");
        }
        use OnboardingState as O;
        for s in [O::KycPending, O::AwaitingEvidence, O::KycReview, O::AmlPending, O::AmlReview, O::FraudPending, O::FraudReview, O::Approved, O::Rejected, O::ComplianceHold, O::FraudBlocked, O::Expired, O::Failed] {
            assert_eq!(terminal_event("onboarding", s.as_str()).is_some(), s.terminal(), "{s:?}");
        }
        use CardState as C;
        for s in [C::Ordered, C::Issued, C::Shipped, C::PendingActivation, C::Active, C::Suspended, C::Terminated, C::Expired] {
            assert_eq!(terminal_event("cards", &s.as_str().to_ascii_lowercase()).is_some(), s.terminal(), "{s:?}");
        }
        use PaymentStatus as P;
        for s in [P::AuthorizationRequired, P::Authorizing, P::Authorized, P::Executed, P::Settled, P::Failed] {
            assert_eq!(terminal_event("openbanking_payments", &s.as_str().to_ascii_lowercase()).is_some(), s.terminal(), "{s:?}");
        }
        assert_eq!(terminal_event("payouts", "paid").as_deref(), Some("payout.paid"));
        assert_eq!(terminal_event("payouts", "pending_unknown"), None, "the reconciler settles it later");
        assert_eq!(terminal_event("payouts", "accepted"), None);
        assert_eq!(terminal_event("openbanking", "active"), None);
        assert_eq!(terminal_event("nowhere", "paid"), None);
    }

    #[test]
    fn a_delivery_id_is_stable_per_state_and_the_body_embeds_the_view() {
        assert_eq!(delivery_id("payouts", "po_1", "paid"), delivery_id("payouts", "po_1", "paid"));
        assert_ne!(delivery_id("payouts", "po_1", "paid"), delivery_id("payouts", "po_1", "failed"));
        assert_ne!(delivery_id("payouts", "po_1", "paid"), delivery_id("payouts", "po_2", "paid"));
        let body = payload("payout.paid", 1_700_000_000_123, r#"{"id":"po_1","status":"paid"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(parsed["type"], "payout.paid");
        assert_eq!(parsed["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(parsed["data"]["status"], "paid");
    }

    #[test]
    fn a_callback_url_must_be_http_and_names_its_field() {
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/gateway.example.yaml")).expect("example");
        let config = crate::config::GatewayConfig::parse(&example).expect("the example parses");
        assert!(config.teams[0].callback.is_some(), "the example shows a callback");
        let text = example.replace("url: https://payments-app", "url: ftp://payments-app");
        assert!(text.contains("url: ftp://"), "the example has the URL replaced");
        let err = crate::config::GatewayConfig::parse(&text).expect_err("ftp");
        assert!(err.to_string().contains("teams[0].callback.url must be an http(s) URL"), "{err}");
        let err = crate::config::GatewayConfig::parse(&example.replace("max_attempts: 8", "max_attempts: 0")).expect_err("no attempt");
        assert!(err.to_string().contains("teams[0].callback.max_attempts"), "{err}");
    }

    #[tokio::test]
    async fn a_secret_that_is_not_whsec_stops_start_up_naming_its_field_never_its_value() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let teams = |secret: &str| -> Vec<TeamConfig> {
            serde_norway::from_str(&format!(
                "- {{name: quiet, api_keys: [{{value: k1}}], scopes: []}}\n\
                 - {{name: app, api_keys: [{{value: k2}}], scopes: [], callback: {{url: 'http://127.0.0.1:1/hooks', secret: {{value: '{secret}'}}}}}}\n"
            ))
            .expect("teams parse")
        };
        match Callbacks::load(&teams("not base64 at all"), &store).await {
            Ok(_) => panic!("a secret that is not whsec_<base64> loaded"),
            Err(e) => assert!(e.to_string().contains("teams[1].callback.secret") && !e.to_string().contains("not base64 at all"), "{e}"),
        }
        let loaded = match Callbacks::load(&teams("whsec_c3dpdGNoeWFyZA=="), &store).await {
            Ok(loaded) => loaded,
            Err(e) => panic!("a whsec_ secret is refused: {e}"),
        };
        assert!(loaded.enabled_for("app") && !loaded.enabled_for("quiet"));
        assert!(!format!("{:?}", loaded.receivers.get("app")).contains("switchyard"), "the key is not printed");
    }

    #[test]
    fn backoff_grows_and_ends_after_the_last_attempt() {
        let policy: CallbackConfig = serde_norway::from_str("url: http://127.0.0.1:1/\nsecret: {value: whsec_AAAA}\nmax_attempts: 4\nmin_backoff_ms: 100\nmax_backoff_ms: 1000\n").expect("parses");
        let first = backoff(&policy, 1).expect("retry after the first");
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
        assert!(backoff(&policy, 3).expect("retry after the third") >= Duration::from_millis(400));
        assert_eq!(backoff(&policy, 4), None, "four attempts, then given up");
        assert_eq!(backoff(&policy, 0), None);
    }
}
