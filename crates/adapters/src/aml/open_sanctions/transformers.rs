//! OpenSanctions wire types and their mapping to canonical terms.
//!
//! Results: `{id, caption, schema, properties{topics[], ...}, datasets[],
//! score, match, explanations{<feature>: {score, detail, ...}}}` (yente's
//! `ScoredEntityResponse`; older yente releases sent a `features` map of
//! bare scores, which the current document no longer has). Topics: `sanction`, `sanction.linked`,
//! `role.pep`, `role.rca`, `crime.*`, `reg.warn`, `debarment`, ...

use crate::aml::{most_severe, AmlVerdict};
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_canonical::aml::{AmlCommand, AmlMatch, AmlStatus, MatchedField, ScreeningList, SubjectKind};
use switchyard_canonical::{ErrorClass, ErrorCode};

/// The name score at or above which a match that also agrees on the birth
/// date is treated as confirmed.
pub const CONFIRM_SCORE: f64 = 0.97;

#[derive(Debug, Serialize)]
pub(super) struct MatchRequest {
    queries: BTreeMap<&'static str, Query>,
}

#[derive(Debug, Serialize)]
struct Query {
    schema: &'static str,
    properties: BTreeMap<&'static str, Vec<String>>,
}

impl MatchRequest {
    pub(super) fn new(cmd: &AmlCommand) -> Self {
        let s = &cmd.subject;
        let mut properties = BTreeMap::new();
        properties.insert("name", vec![s.full_name.clone()]);
        if let Some(f) = &s.first_name {
            properties.insert("firstName", vec![f.clone()]);
        }
        if let Some(l) = &s.last_name {
            properties.insert("lastName", vec![l.clone()]);
        }
        if let Some(b) = &s.birth_date {
            properties.insert("birthDate", vec![b.clone()]);
        }
        if let Some(c) = &s.country {
            let key = if s.kind == SubjectKind::Person { "nationality" } else { "country" };
            properties.insert(key, vec![c.to_ascii_lowercase()]);
        }
        let schema = match s.kind {
            SubjectKind::Person => "Person",
            SubjectKind::Organisation => "Organization",
        };
        let mut queries = BTreeMap::new();
        queries.insert("q", Query { schema, properties });
        Self { queries }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct OsReply {
    responses: HashMap<String, OsResponse>,
}

#[derive(Debug, Deserialize)]
struct OsResponse {
    #[serde(default)]
    results: Vec<OsResult>,
}

#[derive(Debug, Deserialize)]
struct OsResult {
    id: String,
    caption: String,
    score: f64,
    #[serde(rename = "match")]
    is_match: bool,
    #[serde(default)]
    datasets: Vec<String>,
    #[serde(default)]
    properties: HashMap<String, serde_json::Value>,
    #[serde(default)]
    explanations: HashMap<String, Explanation>,
}

/// yente's `FeatureResult`: one feature's contribution to the score.
#[derive(Debug, Deserialize)]
struct Explanation {
    score: f64,
}

fn list_of(topic: &str) -> Option<ScreeningList> {
    match topic {
        t if t.starts_with("sanction") => Some(ScreeningList::Sanctions),
        "role.pep" | "role.rca" => Some(ScreeningList::Pep),
        t if t.starts_with("crime") || t.starts_with("reg.") || t == "debarment" || t == "wanted" => Some(ScreeningList::Watchlist),
        _ => None,
    }
}

impl OsResult {
    fn to_match(&self) -> AmlMatch {
        let topics: Vec<String> = self
            .properties
            .get("topics")
            .and_then(|t| t.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let mut fields = Vec::new();
        let positive = |p: &str| self.explanations.iter().any(|(k, e)| k.contains(p) && e.score > 0.0);
        if positive("name") {
            fields.push(MatchedField::Name);
        }
        if positive("dob") || positive("birth") {
            fields.push(MatchedField::BirthDate);
        }
        if positive("country") {
            fields.push(MatchedField::Country);
        }
        AmlMatch {
            list: most_severe(topics.iter().filter_map(|t| list_of(t))).unwrap_or(ScreeningList::Watchlist),
            source: self.datasets.first().cloned().unwrap_or_default(),
            entity_id: self.id.clone(),
            matched_name: self.caption.clone(),
            score: self.score.clamp(0.0, 1.0),
            matched_fields: fields,
        }
    }
}

pub(super) fn verdict(cmd: &AmlCommand, reply: OsReply) -> Result<AmlVerdict, AdapterError> {
    let Some(response) = reply.responses.get("q") else {
        return Err(AdapterError::new(ErrorClass::Transient, ErrorCode::Unknown, "opensanctions reply lacks our query"));
    };
    let wanted = |m: &AmlMatch| cmd.lists.is_empty() || cmd.lists.contains(&m.list);
    let matches: Vec<AmlMatch> = response.results.iter().filter(|r| r.is_match).map(OsResult::to_match).filter(wanted).collect();
    let confirmed = matches.iter().any(|m| m.score >= CONFIRM_SCORE && m.matched_fields.contains(&MatchedField::BirthDate));
    let status = match (matches.is_empty(), confirmed) {
        (true, _) => AmlStatus::Clear,
        (false, true) => AmlStatus::ConfirmedMatch,
        (false, false) => AmlStatus::PotentialMatch,
    };
    Ok(AmlVerdict { status, matches, vendor_reference: String::new() })
}

#[derive(Debug, Deserialize)]
pub(super) struct OsError {
    detail: Option<serde_json::Value>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<OsError>) -> AdapterError {
    let message = body.and_then(|b| b.detail).map(|d| d.to_string()).unwrap_or_default();
    let mut err = match status {
        400 | 422 => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("opensanctions: {message}")),
        _ => AdapterError::from_status(status, retry_after, &format!("opensanctions: {message}")),
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}
