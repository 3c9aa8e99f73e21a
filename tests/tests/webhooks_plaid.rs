//! Plaid webhooks through the ingester, signed by the Plaid simulator as
//! Plaid signs them (ES256 JWT in `Plaid-Verification`, key from
//! `/webhook_verification_key/get`, body SHA-256 and `iat` in the payload).
//!
//! - Verified callbacks are published once on `openbanking.provider-events.v1`,
//!   in our vocabulary, even when one delivery is posted twice; the same
//!   body signed again (a new `SYNC_UPDATES_AVAILABLE` is byte-identical to
//!   the last) is published again, never dropped as a duplicate.
//! - A tampered body, an old `iat`, a `kid` the key endpoint does not know,
//!   another algorithm, and a key Plaid has rotated out (learnt by fetching
//!   the cached keys again when a new kid appears, as Plaid's guide does) are refused with 401
//!   and counted by reason; the unknown kid is asked for once, not per copy.
//! - A rotated key is fetched on first use, and the fetched keys are exported
//!   as `switchyard_webhooks_verification_key_info`.

use anyhow::Result;
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_e2e::webhooks::{drain, url};
use switchyard_ingester::config::{KeyConfig, KeyEndpointConfig, ProviderConfig};
use switchyard_ingester::start_ingester;
use switchyard_localstack::LocalStack;
use switchyard_simulators::plaid::{spawn_plaid, webhooks as bodies, PlaidConfig};
use tokio_util::sync::CancellationToken;

const KEY_GET: &str = "/webhook_verification_key/get";

#[tokio::test(flavor = "multi_thread")]
async fn plaid_callbacks_are_verified_published_once_and_forgeries_refused() -> Result<()> {
    let stack = LocalStack::new("plaidwh").await?;
    let run = stack.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
    let plaid_config = PlaidConfig::local();
    let sim = spawn_plaid(plaid_config.clone()).await?;
    let provider = ProviderConfig {
        key_endpoint: Some(KeyEndpointConfig { base_url: sim.base_url(), client_id: plaid_config.client_id.clone() }),
        ..ProviderConfig::new("openbanking", vec![KeyConfig::inline(&plaid_config.secret)])
    };
    let mut config = stack.ingester_config(BTreeMap::from([("plaid".to_owned(), provider)]));
    let topic = stack.topic("openbanking.provider-events.v1");
    config.topics.insert("openbanking".to_owned(), topic.clone());
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(config, shutdown.clone()).await?;
    let to = url(&ingester, "plaid");
    let m = &ingester.metrics;

    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, token: String| {
        let (http, to) = (http.clone(), to.clone());
        async move {
            let sent = http.post(&to).header("content-type", "application/json").header("Plaid-Verification", token).body(body).send().await?;
            Ok::<u16, anyhow::Error>(sent.status().as_u16())
        }
    };
    let now_s = switchyard_canonical::now_ms() / 1000;

    // Three callbacks; the login error's one delivery posted twice.
    let (item_a, item_b) = (format!("item-a-{run}"), format!("item-b-{run}"));
    let login = bodies::item_error(&item_a, "ITEM_LOGIN_REQUIRED");
    let login_token = sim.sign_webhook(&login, now_s, "ES256");
    assert_eq!(post(login.clone(), login_token.clone()).await?, 200);
    // While the first copy's publish is being marked the copy gets 409, which
    // Plaid retries: re-post the same delivery until it is answered.
    let mut copy = 0;
    for _ in 0..50 {
        copy = post(login.clone(), login_token.clone()).await?;
        if copy != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(copy, 200, "a copy is answered 200 too");
    assert_eq!(sim.send_webhook(&to, &bodies::pending_expiration(&item_a, "2027-01-15T13:25:17Z"), 1).await, vec![200]);
    let sync_b = bodies::sync_updates_available(&item_b);
    assert_eq!(post(sync_b.clone(), sim.sign_webhook(&sync_b, now_s - 60, "ES256")).await?, 200);
    // The same body signed again later: new transactions again (every
    // SYNC_UPDATES_AVAILABLE of an item is byte-identical), or Plaid's
    // retry; either way published, never taken for the first one.
    assert_eq!(post(sync_b.clone(), sim.sign_webhook(&sync_b, now_s, "ES256")).await?, 200);
    assert_eq!(sim.calls(KEY_GET), 1, "the key is fetched once and cached");

    // Forgeries, each refused and counted under its reason.
    let forged = bodies::item_error(&item_b, "ITEM_LOGIN_REQUIRED");
    let signed_for_other = sim.sign_webhook(&bodies::sync_updates_available(&item_b), now_s, "ES256");
    assert_eq!(post(forged.clone(), signed_for_other).await?, 401, "tampered body");
    assert_eq!(post(forged.clone(), sim.sign_webhook(&forged, now_s - 301, "ES256")).await?, 401, "iat older than 5 minutes");
    assert_eq!(post(forged.clone(), sim.sign_webhook(&forged, now_s, "HS256")).await?, 401, "another algorithm");
    let unknown = with_kid(&sim.sign_webhook(&forged, now_s, "ES256"), "kid-plaid-never-issued");
    assert_eq!(post(forged.clone(), unknown.clone()).await?, 401, "unknown kid");
    assert_eq!(post(forged.clone(), unknown).await?, 401, "unknown kid, again");
    assert_eq!(sim.calls(KEY_GET), 2, "an unknown kid is asked for once, not per delivery");
    for reason in ["bad_signature", "stale_timestamp", "wrong_algorithm"] {
        assert_eq!(m.refused_count("plaid", reason), 1, "{reason}");
    }
    assert_eq!(m.refused_count("plaid", "unknown_key"), 2);

    // Plaid rotates: the new key is fetched on first use; the old one,
    // now expired, no longer verifies.
    let old_token = sim.sign_webhook(&forged, now_s, "ES256");
    let old_kid = sim.webhook_kid();
    sim.rotate_webhook_key();
    let repaired = bodies::sync_updates_available(&item_a);
    assert_eq!(sim.send_webhook(&to, &repaired, 1).await, vec![200], "signed by the new key");
    assert_eq!(sim.calls(KEY_GET), 4, "the new kid, and the cached live key again to learn its expiry");
    assert_eq!(post(forged.clone(), old_token).await?, 401, "a key Plaid has rotated out");
    assert_eq!(m.refused_count("plaid", "expired_key"), 1);
    let metrics = m.render();
    for (kid, state) in [(old_kid.as_str(), "expired"), (sim.webhook_kid().as_str(), "live")] {
        let line = format!("kid=\"{kid}\",alg=\"ES256\",state=\"{state}\"");
        assert!(metrics.contains(&line), "{line} not exported:\n{metrics}");
    }

    let published = drain(&stack, &topic, 5, Duration::from_secs(3)).await?;
    let mut reasons: HashMap<(String, String), usize> = HashMap::new();
    for (key, e) in &published {
        assert_eq!((key, e.provider.as_str(), e.domain.as_str()), (&e.subject_id, "plaid", "openbanking"));
        *reasons.entry((e.subject_id.clone(), e.reason.clone().unwrap_or_default())).or_default() += 1;
    }
    let expected: HashMap<(String, String), usize> = [
        ((item_a.clone(), "LOGIN_REQUIRED"), 1),
        ((item_a.clone(), "CONSENT_EXPIRING"), 1),
        ((item_b.clone(), "REFRESH_AVAILABLE"), 2),
        ((item_a.clone(), "REFRESH_AVAILABLE"), 1),
    ]
    .into_iter()
    .map(|((s, r), n)| ((s, r.to_owned()), n))
    .collect();
    assert_eq!(reasons, expected, "each verified callback once, no forgery");
    assert_eq!(m.duplicate_count("plaid"), 1, "the second copy was absorbed");
    sim.shutdown().await;
    shutdown.cancel();
    Ok(())
}

/// The same token with its header's `kid` replaced (the signature no longer
/// matches, but the kid is looked up first).
fn with_kid(token: &str, kid: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#));
    let rest = token.split_once('.').map_or("", |(_, r)| r);
    format!("{header}.{rest}")
}
