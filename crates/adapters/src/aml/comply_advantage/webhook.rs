//! ComplyAdvantage screening callbacks mapped to canonical facts.
//!
//! Signing: the newer (Mesh) API sends Standard Webhooks headers; the
//! legacy API's scheme is UNCONFIRMED. Bodies here are the legacy monitoring
//! events our adapter's `/searches` produce (UNCONFIRMED beyond the event
//! names): `match_status_updated` `{"event","data":{"search_id",
//! "client_ref","match_status","risk_level","tags"}}` and
//! `monitored_search_updated` `{"event","data":{"search_id","new":[],
//! "updated":[],"removed":[]}}`.
//!
//! Subject: the adapter tags each search with `switchyard_subject`; when the
//! callback echoes the tags (UNCONFIRMED) that is the subject, otherwise the
//! search id, which `AmlOutcome.vendor_reference` carries too. Event id: the
//! `webhook-id`, stable across retries.

use crate::webhooks::{body_sha256_hex, derived_event_id, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Notification {
    event: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    search_id: serde_json::Value,
    #[serde(default)]
    match_status: Option<String>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
    #[serde(default)]
    new: Vec<serde_json::Value>,
    #[serde(default)]
    updated: Vec<serde_json::Value>,
    #[serde(default)]
    removed: Vec<serde_json::Value>,
}

const SUBJECT_TAG: &str = "switchyard_subject";

/// Tags as the request sends them (`{"name": "value"}`) or as a list of
/// `{"name","value"}` pairs.
fn subject_tag(tags: &serde_json::Value) -> Option<String> {
    let value = match tags {
        serde_json::Value::Object(map) => map.get(SUBJECT_TAG),
        serde_json::Value::Array(items) => {
            items.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some(SUBJECT_TAG)).and_then(|t| t.get("value"))
        }
        _ => None,
    };
    value.and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_owned)
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let d = n.data;
    let search_id = match &d.search_id {
        serde_json::Value::Number(id) => id.to_string(),
        serde_json::Value::String(id) if !id.is_empty() => id.clone(),
        _ => return Err(Refusal::MalformedPayload("search_id".into())),
    };
    let (kind, reason) = match n.event.as_str() {
        "match_status_updated" => {
            let status = d.match_status.filter(|s| !s.is_empty()).ok_or_else(|| Refusal::MalformedPayload("match_status".into()))?;
            (ProviderEventKind::AmlMatchUpdated, Some(status))
        }
        "monitored_search_updated" => (
            ProviderEventKind::AmlMonitorAlert,
            Some(format!("new={},updated={},removed={}", d.new.len(), d.updated.len(), d.removed.len())),
        ),
        _ => (ProviderEventKind::Other, d.match_status),
    };
    let event_id = match &verified.message_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => derived_event_id(&["complyadvantage", &n.event, &search_id, &body_sha256_hex(body)]),
    };
    Ok(EventFacts {
        event_id,
        subject_id: d.tags.as_ref().and_then(subject_tag).unwrap_or_else(|| search_id.clone()),
        provider_reference: search_id,
        kind,
        vendor_event_type: n.event,
        amount_minor: None,
        currency: None,
        reason,
        occurred_at_ms: verified.signed_at_ms.unwrap_or(verified.verified_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(id: &str) -> Verified {
        Verified { message_id: Some(id.into()), signed_at_ms: Some(1_764_065_700_000), verified_at_ms: 9 }
    }

    #[test]
    fn a_match_status_update_carries_the_status_for_our_subject_under_the_webhook_id() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/complyadvantage-match-status-updated.json");
        let facts = map(body, &signed("msg_ca_1")).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::AmlMatchUpdated);
        assert_eq!(facts.reason.as_deref(), Some("true_positive"));
        assert_eq!((facts.subject_id.as_str(), facts.provider_reference.as_str()), ("app-7", "1183"));
        assert_eq!((facts.event_id.as_str(), facts.occurred_at_ms), ("msg_ca_1", 1_764_065_700_000));
    }

    #[test]
    fn a_monitoring_update_is_an_alert_counting_the_hits_and_untagged_searches_key_by_search_id() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/complyadvantage-monitored-search-updated.json");
        let facts = map(body, &signed("msg_ca_2")).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::AmlMonitorAlert);
        assert_eq!(facts.reason.as_deref(), Some("new=2,updated=1,removed=0"));
        let untagged = br#"{"event":"monitored_search_updated","data":{"search_id":"77","new":["x"],"tags":[{"name":"other","value":"y"}]}}"#;
        let facts = map(untagged, &Verified::default()).expect("maps");
        assert_eq!(facts.subject_id, "77");
        assert!(facts.event_id.starts_with("sha256:"), "no webhook id: derived");
        for bad in [&br#"{"event":"match_status_updated","data":{"search_id":1}}"#[..], br#"{"event":"x","data":{"search_id":null}}"#] {
            assert!(matches!(map(bad, &Verified::default()), Err(Refusal::MalformedPayload(_))));
        }
    }
}
