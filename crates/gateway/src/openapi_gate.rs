//! `/v1` is frozen: the document generated now must keep every promise of
//! the released one (`services/gateway/openapi.v1.released.json`), as the
//! schema gate keeps topics FULL compatible. A client generated from the
//! released document must work unchanged against the current gateway, so:
//! nothing released disappears (operations, parameters, response statuses,
//! media types, headers, schemas, properties, enum values, security
//! schemes, ways to authenticate); nothing released changes shape (types,
//! formats, `$ref`s, constraints, what is required: the views are read and
//! the requests written by the same clients); nothing new is demanded (a
//! new required parameter, a new scope, a new constraint). Additions that
//! an old client never sees are allowed: operations, optional properties,
//! enum values, response statuses, ways to authenticate.
//!
//! Prose (descriptions, summaries, examples, tags, titles, links) is
//! documentation, not contract, and is not compared.

use serde_json::Value;
use std::collections::BTreeSet;

/// Where the released `/v1` document is kept, from the workspace root.
pub const RELEASED_PATH: &str = "services/gateway/openapi.v1.released.json";

/// Keys that are prose, not contract.
const PROSE: &[&str] = &["description", "summary", "example", "examples", "title", "tags", "links", "info", "externalDocs"];

/// Maps whose released entries must remain but which may gain entries.
const OPEN_MAPS: &[&str] = &["paths", "components", "schemas", "securitySchemes", "properties", "responses", "content", "headers"];

/// Every change from `released` to `current` that a client of `released`
/// would notice, each naming where (a JSON pointer) and what.
pub fn breaking_changes(released: &Value, current: &Value) -> Vec<String> {
    let mut found = Vec::new();
    compare("", released, current, Shape::Strict, &mut found);
    found
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Every key on both sides is compared; a key only `current` has is a change.
    Strict,
    /// `released` entries must remain; new entries are additions.
    Open,
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn compare(at: &str, released: &Value, current: &Value, shape: Shape, out: &mut Vec<String>) {
    match (released, current) {
        (Value::Object(r), Value::Object(c)) => {
            for (key, rv) in r {
                if PROSE.contains(&key.as_str()) {
                    continue;
                }
                let here = format!("{at}/{}", escape(key));
                let Some(cv) = c.get(key) else {
                    out.push(format!("{here}: removed"));
                    continue;
                };
                match key.as_str() {
                    "enum" => subset(&here, rv, cv, "enum value", out),
                    "required" if rv.is_array() => same_set(&here, rv, cv, out),
                    "parameters" => parameters(&here, rv, cv, out),
                    "security" => security(&here, rv, cv, out),
                    // A path item may gain methods; its operations are strict.
                    _ if at == "/paths" => compare(&here, rv, cv, Shape::Open, out),
                    _ if OPEN_MAPS.contains(&key.as_str()) => compare(&here, rv, cv, Shape::Open, out),
                    _ => compare(&here, rv, cv, Shape::Strict, out),
                }
            }
            if shape == Shape::Strict {
                for key in c.keys().filter(|k| !r.contains_key(*k) && !PROSE.contains(&k.as_str())) {
                    out.push(format!("{at}/{}: added where a released client does not expect it", escape(key)));
                }
            }
        }
        (Value::Array(r), Value::Array(c)) => {
            if r.len() != c.len() {
                out.push(format!("{at}: {} entries released, {} now", r.len(), c.len()));
                return;
            }
            for (i, (rv, cv)) in r.iter().zip(c).enumerate() {
                compare(&format!("{at}/{i}"), rv, cv, Shape::Strict, out);
            }
        }
        (r, c) if r == c => {}
        (r, c) => out.push(format!("{at}: {r} released, {c} now")),
    }
}

/// Released values must all remain (an enum, for a reader of old values
/// and a writer of them alike).
fn subset(at: &str, released: &Value, current: &Value, what: &str, out: &mut Vec<String>) {
    let now: BTreeSet<String> = current.as_array().into_iter().flatten().map(Value::to_string).collect();
    for v in released.as_array().into_iter().flatten() {
        if !now.contains(&v.to_string()) {
            out.push(format!("{at}: {what} {v} removed"));
        }
    }
}

/// A property made required breaks a writer; one made optional, a reader.
fn same_set(at: &str, released: &Value, current: &Value, out: &mut Vec<String>) {
    let set = |v: &Value| -> BTreeSet<String> { v.as_array().into_iter().flatten().map(Value::to_string).collect() };
    let (r, c) = (set(released), set(current));
    for gone in r.difference(&c) {
        out.push(format!("{at}: {gone} no longer required"));
    }
    for new in c.difference(&r) {
        out.push(format!("{at}: {new} now required"));
    }
}

/// Parameters by `(in, name)`: each released one remains as it was; a new
/// one may not be required.
fn parameters(at: &str, released: &Value, current: &Value, out: &mut Vec<String>) {
    let key = |p: &Value| format!("{}:{}", p["in"].as_str().unwrap_or(""), p["name"].as_str().unwrap_or(""));
    let now: Vec<&Value> = current.as_array().into_iter().flatten().collect();
    let before: Vec<&Value> = released.as_array().into_iter().flatten().collect();
    for r in &before {
        match now.iter().find(|c| key(c) == key(r)) {
            Some(c) => compare(&format!("{at}/{}", escape(&key(r))), r, c, Shape::Strict, out),
            None => out.push(format!("{at}/{}: removed", escape(&key(r)))),
        }
    }
    for c in now.iter().filter(|c| !before.iter().any(|r| key(r) == key(c))) {
        if c["required"].as_bool() == Some(true) {
            out.push(format!("{at}/{}: a new required parameter", escape(&key(c))));
        }
    }
}

/// Each released way to authenticate (scheme and scopes) remains as it
/// was; new alternatives are allowed.
fn security(at: &str, released: &Value, current: &Value, out: &mut Vec<String>) {
    let now: Vec<&Value> = current.as_array().into_iter().flatten().collect();
    for r in released.as_array().into_iter().flatten() {
        if !now.contains(&r) {
            out.push(format!("{at}: the alternative {r} is gone or asks for other scopes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "switchyard", "version": "1"},
            "paths": {"/v1/payouts": {"post": {
                "operationId": "createPayout",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PayoutRequest"}}}, "required": true},
                "responses": {"202": {"description": "accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PayoutView"}}}}},
                "security": [{"api_key": ["payouts:write"]}]
            }}},
            "components": {
                "schemas": {
                    "PayoutRequest": {"type": "object", "required": ["amount_minor"], "properties": {
                        "amount_minor": {"type": "integer", "format": "int64"},
                        "rail": {"type": "string", "enum": ["standard", "instant"]}
                    }},
                    "PayoutView": {"type": "object", "required": ["id", "status"], "properties": {
                        "id": {"type": "string"}, "status": {"type": "string", "description": "where it stands"}
                    }}
                },
                "securitySchemes": {"api_key": {"type": "http", "scheme": "bearer"}}
            }
        })
    }

    fn changed(edit: impl Fn(&mut Value)) -> Vec<String> {
        let mut current = doc();
        edit(&mut current);
        breaking_changes(&doc(), &current)
    }

    #[test]
    fn additions_an_old_client_never_sees_are_allowed() {
        assert!(breaking_changes(&doc(), &doc()).is_empty());
        let found = changed(|d| {
            d["paths"]["/v1/payouts/{id}"] = json!({"get": {"responses": {"200": {"description": "ok"}}}});
            d["paths"]["/v1/payouts"]["get"] = json!({"responses": {"200": {"description": "ok"}}});
            d["components"]["schemas"]["PayoutView"]["properties"]["provider"] = json!({"type": ["string", "null"]});
            d["components"]["schemas"]["PayoutRequest"]["properties"]["rail"]["enum"] = json!(["standard", "instant", "same_day"]);
            d["paths"]["/v1/payouts"]["post"]["responses"]["409"] = json!({"description": "in flight"});
            d["paths"]["/v1/payouts"]["post"]["security"] = json!([{"api_key": ["payouts:write"]}, {"oauth2": ["payouts:write"]}]);
            d["paths"]["/v1/payouts"]["post"]["parameters"] = json!([
                {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string"}},
                {"name": "X-Correlation-Id", "in": "header", "required": false, "schema": {"type": "string"}}
            ]);
            d["components"]["schemas"]["PayoutView"]["properties"]["status"]["description"] = json!("reworded");
            d["info"]["version"] = json!("2");
        });
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn every_change_a_released_client_would_notice_is_named() {
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("/paths/~1v1~1payouts/post: removed", Box::new(|d| d["paths"]["/v1/payouts"] = json!({}))),
            ("/components/schemas/PayoutView/properties/status: removed", Box::new(|d| {
                if let Some(p) = d["components"]["schemas"]["PayoutView"]["properties"].as_object_mut() {
                    p.remove("status");
                }
            })),
            ("/components/schemas/PayoutRequest/properties/amount_minor/format", Box::new(|d| d["components"]["schemas"]["PayoutRequest"]["properties"]["amount_minor"]["format"] = json!("int32"))),
            ("now required", Box::new(|d| d["components"]["schemas"]["PayoutRequest"]["required"] = json!(["amount_minor", "rail"]))),
            ("no longer required", Box::new(|d| d["components"]["schemas"]["PayoutView"]["required"] = json!(["id"]))),
            ("enum value \"instant\" removed", Box::new(|d| d["components"]["schemas"]["PayoutRequest"]["properties"]["rail"]["enum"] = json!(["standard"]))),
            ("/responses/202: removed", Box::new(|d| d["paths"]["/v1/payouts"]["post"]["responses"] = json!({"200": {"description": "ok"}}))),
            ("a new required parameter", Box::new(|d| {
                if let Some(p) = d["paths"]["/v1/payouts"]["post"]["parameters"].as_array_mut() {
                    p.push(json!({"name": "X-Team", "in": "header", "required": true}));
                }
            })),
            ("header:Idempotency-Key: removed", Box::new(|d| d["paths"]["/v1/payouts"]["post"]["parameters"] = json!([]))),
            ("asks for other scopes", Box::new(|d| d["paths"]["/v1/payouts"]["post"]["security"] = json!([{"api_key": ["payouts:write", "payouts:admin"]}]))),
            ("maxLength: added", Box::new(|d| d["components"]["schemas"]["PayoutView"]["properties"]["id"]["maxLength"] = json!(24))),
            ("operationId", Box::new(|d| d["paths"]["/v1/payouts"]["post"]["operationId"] = json!("postPayout"))),
            ("/components/securitySchemes/api_key: removed", Box::new(|d| d["components"]["securitySchemes"] = json!({}))),
        ];
        for (expected, edit) in cases {
            let found = changed(edit);
            assert!(found.iter().any(|f| f.contains(expected)), "expected {expected:?} among {found:#?}");
        }
    }

    #[test]
    fn the_generated_v1_keeps_every_released_promise() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let released: Value = serde_json::from_str(&std::fs::read_to_string(root.join(RELEASED_PATH)).expect("the released /v1 document")).expect("JSON");
        let current: Value = serde_json::from_str(&crate::openapi::document()).expect("JSON");
        let found = breaking_changes(&released, &current);
        assert!(found.is_empty(), "/v1 is frozen; these changes break its clients (a new /v2, or undo them):\n{}", found.join("\n"));
    }
}
