//! ComplyAdvantage wire types and their mapping to canonical terms.
//!
//! `match_status` unknown | no_match | potential_match | false_positive |
//! true_positive | true_positive_approve | true_positive_reject. Hits carry
//! `doc {id, name, types[], sources[]}` and `match_types[]` (name_exact,
//! aka_exact, name_fuzzy, year_of_birth, ...).

use crate::aml::{most_severe, AmlVerdict};
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlMatch, AmlStatus, MatchedField, ScreeningList, SubjectKind};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Serialize)]
pub(super) struct SearchRequest {
    search_term: serde_json::Value,
    client_ref: String,
    fuzziness: f64,
    filters: Filters,
    share_url: u8,
    tags: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
struct Filters {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    birth_year: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    country_codes: Vec<String>,
    entity_type: &'static str,
}

impl SearchRequest {
    pub(super) fn new(cmd: &AmlCommand, key: &str) -> Self {
        let s = &cmd.subject;
        let search_term = match (s.kind, &s.first_name, &s.last_name) {
            (SubjectKind::Person, Some(f), Some(l)) => serde_json::json!({ "first_name": f, "last_name": l }),
            _ => serde_json::Value::String(s.full_name.clone()),
        };
        let types = cmd
            .lists
            .iter()
            .flat_map(|l| match l {
                ScreeningList::Sanctions => &["sanction"][..],
                ScreeningList::Pep => &["pep"][..],
                ScreeningList::Watchlist => &["warning", "fitness-probity"][..],
                ScreeningList::AdverseMedia => &["adverse-media"][..],
            })
            .copied()
            .collect();
        let mut tags = BTreeMap::new();
        tags.insert("switchyard_subject", cmd.subject_id.clone());
        if cmd.action == AmlAction::Rescreen {
            tags.insert("list_update", cmd.list_update.clone().unwrap_or_default());
        }
        Self {
            search_term,
            client_ref: key.to_owned(),
            // ComplyAdvantage's recommended default for person names.
            fuzziness: 0.6,
            filters: Filters {
                types,
                birth_year: cmd.birth_year(),
                country_codes: s.country.iter().cloned().collect(),
                entity_type: match s.kind {
                    SubjectKind::Person => "person",
                    SubjectKind::Organisation => "company",
                },
            },
            share_url: 0,
            tags,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CaEnvelope {
    content: CaContent,
}

#[derive(Debug, Deserialize)]
struct CaContent {
    data: CaSearch,
}

#[derive(Debug, Deserialize)]
struct CaSearch {
    id: serde_json::Value,
    match_status: String,
    #[serde(default)]
    hits: Vec<CaHit>,
}

#[derive(Debug, Deserialize)]
struct CaHit {
    doc: CaDoc,
    #[serde(default)]
    match_types: Vec<String>,
    #[serde(default)]
    is_whitelisted: bool,
}

#[derive(Debug, Deserialize)]
struct CaDoc {
    id: String,
    name: String,
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    sources: Vec<String>,
}

fn list_of(kind: &str) -> Option<ScreeningList> {
    match kind {
        "sanction" => Some(ScreeningList::Sanctions),
        k if k.starts_with("pep") => Some(ScreeningList::Pep),
        "warning" | "fitness-probity" => Some(ScreeningList::Watchlist),
        k if k.starts_with("adverse-media") => Some(ScreeningList::AdverseMedia),
        _ => None,
    }
}

impl CaHit {
    fn to_match(&self) -> AmlMatch {
        let has = |p: &str| self.match_types.iter().any(|m| m.starts_with(p));
        let mut fields = Vec::new();
        if has("name") {
            fields.push(MatchedField::Name);
        }
        if has("aka") {
            fields.push(MatchedField::Alias);
        }
        if has("year_of_birth") {
            fields.push(MatchedField::BirthDate);
        }
        if has("country") {
            fields.push(MatchedField::Country);
        }
        // ComplyAdvantage's own `score` has no documented scale
        // (UNCONFIRMED); ours derives from how the name matched.
        let score = if has("name_exact") {
            1.0
        } else if has("aka_exact") {
            0.95
        } else if has("name_variation") || has("aka") {
            0.85
        } else {
            0.75
        };
        AmlMatch {
            list: most_severe(self.doc.types.iter().filter_map(|t| list_of(t))).unwrap_or(ScreeningList::Watchlist),
            source: self.doc.sources.first().cloned().unwrap_or_default(),
            entity_id: self.doc.id.clone(),
            matched_name: self.doc.name.clone(),
            score,
            matched_fields: fields,
        }
    }
}

pub(super) fn verdict(reply: CaEnvelope) -> Result<AmlVerdict, AdapterError> {
    let search = reply.content.data;
    let status = match search.match_status.as_str() {
        "no_match" | "false_positive" | "true_positive_approve" => AmlStatus::Clear,
        "potential_match" | "unknown" => AmlStatus::PotentialMatch,
        "true_positive" | "true_positive_reject" => AmlStatus::ConfirmedMatch,
        other => {
            return Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("complyadvantage: unknown match_status {other}")));
        }
    };
    // Whitelisted hits were already cleared by an analyst.
    let matches = search.hits.iter().filter(|h| !h.is_whitelisted).map(CaHit::to_match).collect();
    let vendor_reference = match search.id {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(AmlVerdict { status, matches, vendor_reference })
}

#[derive(Debug, Deserialize)]
pub(super) struct CaError {
    message: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<CaError>) -> AdapterError {
    let message = body.and_then(|b| b.message).unwrap_or_default();
    let mut err = match status {
        400 | 422 => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("complyadvantage: {message}")),
        // Our client_ref reused with another search: our mapping changed
        // between attempts of one command; a person must look.
        409 => AdapterError::new(ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision, format!("complyadvantage: {message}")),
        _ => AdapterError::from_status(status, retry_after, &format!("complyadvantage: {message}")),
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_potential_sanctions_hit_is_normalized() {
        let reply: CaEnvelope = serde_json::from_str(
            r#"{"code":200,"status":"success","content":{"data":{"id":1183,"match_status":"potential_match","risk_level":"high","hits":[
              {"doc":{"id":"N0HUXBOHUAA52RH","name":"Ivan Petrov","types":["pep","sanction"],"sources":["ofac-sdn-list"]},
               "match_types":["name_exact","year_of_birth"],"score":1.7,"is_whitelisted":false},
              {"doc":{"id":"W1","name":"Ivan Petrov","types":["pep"],"sources":["x"]},"match_types":["name_exact"],"is_whitelisted":true}]}}}"#,
        )
        .expect("fixture parses");
        let v = verdict(reply).expect("verdict");
        assert_eq!((v.status, v.vendor_reference.as_str(), v.matches.len()), (AmlStatus::PotentialMatch, "1183", 1));
        let m = &v.matches[0];
        assert_eq!((m.list, m.score, m.matched_fields.clone()), (ScreeningList::Sanctions, 1.0, vec![MatchedField::Name, MatchedField::BirthDate]));
    }
}
