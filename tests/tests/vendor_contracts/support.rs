//! Helpers for vendor_contracts.rs and kyc_contracts.rs: the pinned OpenAPI
//! documents as JSON Schema, and a recording proxy between an adapter and a
//! simulator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use switchyard_adapters::http::Transport;
use switchyard_adapters::CallContext;

pub(crate) const STRIPE_API_KEY: &str = "sk_test_switchyard";
pub(crate) const ADYEN_API_KEY: &str = "adyen_test_switchyard";
pub(crate) const ADYEN_BALANCE_ACCOUNT: &str = "BA00000000000000000000001";

pub(crate) fn ctx() -> CallContext {
    CallContext { correlation_id: "contracts".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() }
}

/// HTTP/1.1 to the recording proxy.
pub(crate) fn transport() -> Transport {
    let mut t = Transport::new(Duration::from_secs(5), 4);
    t.http2_prior_knowledge = false;
    t
}

/// Fails on any finding not covered by `known` (deviations we know of and
/// have not settled yet, each with why: a finding containing the text is
/// accepted and printed), and on a listed text no finding contains any
/// more, so the list cannot outlive its cause.
pub(crate) fn report(findings: &[String], known: &[(&str, &str)]) {
    let (accepted, unknown): (Vec<&String>, Vec<&String>) = findings.iter().partition(|f| known.iter().any(|(text, _)| f.contains(text)));
    for (text, why) in known {
        let seen = accepted.iter().filter(|f| f.contains(text)).count();
        eprintln!("known deviation ({seen} findings) `{text}`: {why}");
        assert!(seen > 0, "the known deviation `{text}` is no longer seen: remove it from the list");
    }
    let unknown: Vec<&str> = unknown.iter().map(|f| f.as_str()).collect();
    assert!(unknown.is_empty(), "{} contract mismatch(es):\n  {}", unknown.len(), unknown.join("\n  "));
}

pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

/// A pinned, trimmed OpenAPI document (see tests/contracts/README.md).
pub(crate) struct Contract {
    doc: Value,
    /// What the vendor's server URL adds before the spec's paths (Adyen's `/btl/v4`).
    prefix: &'static str,
    /// `components.schemas` converted to JSON Schema, as `$defs`.
    defs: Value,
}

impl Contract {
    pub(crate) fn load(rel: &str, prefix: &'static str) -> Self {
        let path = format!("{}/contracts/{rel}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let defs = convert(&doc["components"]["schemas"]);
        Self { doc, prefix, defs }
    }

    pub(crate) fn schema_ref(&self, name: &str) -> Value {
        assert!(self.doc["components"]["schemas"].get(name).is_some(), "schema {name} is not in the pinned spec");
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// Follows a `$ref` to another part of the document (parameters, responses...).
    fn deref<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.doc.pointer(pointer).map_or(node, |n| self.deref(n)),
            None => node,
        }
    }

    /// The operation whose path template matches `path`.
    pub(crate) fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let path = path.strip_prefix(self.prefix)?;
        let want: Vec<&str> = path.trim_matches('/').split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        // Literal segments beat templated ones (`/transfers/approve` vs `/transfers/{id}`).
        let mut best: Option<(usize, &String, &Value)> = None;
        for (template, item) in paths {
            let have: Vec<&str> = template.trim_matches('/').split('/').collect();
            let fits = have.len() == want.len() && have.iter().zip(&want).all(|(h, w)| h.starts_with('{') || h == w);
            let literal = have.iter().filter(|h| !h.starts_with('{')).count();
            if let (true, Some(op)) = (fits, item.get(method.to_ascii_lowercase())) {
                if best.is_none_or(|(l, _, _)| literal > l) {
                    best = Some((literal, template, op));
                }
            }
        }
        best.map(|(_, t, op)| (t.clone(), op))
    }

    fn parameters<'a>(&'a self, op: &'a Value) -> impl Iterator<Item = &'a Value> {
        op["parameters"].as_array().into_iter().flatten().map(|p| self.deref(p))
    }

    /// `created[gte]` is the deepObject parameter `created`.
    pub(crate) fn declares_query(&self, op: &Value, name: &str) -> bool {
        let base = name.split('[').next().unwrap_or(name);
        self.parameters(op).any(|p| p["in"] == "query" && p["name"] == base)
    }

    pub(crate) fn missing_required_query(&self, op: &Value, query: &str) -> Vec<String> {
        let sent = query_names(query);
        self.parameters(op)
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .filter_map(|p| p["name"].as_str())
            .filter(|n| !sent.iter().any(|s| s.split('[').next() == Some(n)))
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn request_schema(&self, op: &Value, media: &str) -> Option<Value> {
        self.deref(&op["requestBody"])["content"].get(media).map(|c| c["schema"].clone())
    }

    pub(crate) fn response_schema(&self, op: &Value, status: u16) -> Option<Value> {
        let responses = &op["responses"];
        let r = responses.get(status.to_string()).or_else(|| responses.get("default"))?;
        self.deref(r)["content"].get("application/json").map(|c| c["schema"].clone())
    }

    pub(crate) fn webhook_schema(&self, kind: &str) -> Option<Value> {
        let hook = self.doc["webhooks"].get(kind)?;
        self.request_schema(&hook["post"], "application/json")
    }

    /// The body answered with `status` against that status' schema.
    pub(crate) fn check_response(&self, op: &Value, at: &str, status: u16, body: &[u8]) -> Vec<String> {
        let declared = op["responses"].get(status.to_string()).is_some() || op["responses"].get("default").is_some();
        if !declared {
            return vec![format!("{at}: the simulator answered {status}, a status the spec does not declare: {}", String::from_utf8_lossy(body))];
        }
        let Some(schema) = self.response_schema(op, status) else { return Vec::new() };
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => validate(self, &schema, &v, true).into_iter().map(|e| format!("{at} -> {status}: {e}")).collect(),
            Err(e) => vec![format!("{at} -> {status}: not JSON ({e})")],
        }
    }
}

/// OpenAPI schema object -> JSON Schema 2020-12. A `oneOf` with a
/// discriminator mapping becomes "the mapped schema for the tag present":
/// alternatives that share a shape (Onfido's report kinds) would otherwise
/// all match and fail `oneOf`.
fn convert(node: &Value) -> Value {
    match node {
        Value::Array(items) => Value::Array(items.iter().map(convert).collect()),
        Value::Object(map) => {
            let mut out: Map<String, Value> = Map::new();
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        // A `$ref` is a URI: a schema name with a space
                        // (Marqeta's `ATC Information Model`) is escaped.
                        out.insert(k.clone(), Value::from(r.replace("#/components/schemas/", "#/$defs/").replace(' ', "%20")));
                    }
                    ("nullable" | "discriminator" | "xml", _) => {}
                    // OpenAPI extensions and `properties` names are not keywords.
                    ("properties", Value::Object(props)) => {
                        out.insert(k.clone(), Value::Object(props.iter().map(|(n, s)| (n.clone(), convert(s))).collect()));
                    }
                    _ if k.starts_with("x-") => {}
                    _ => {
                        out.insert(k.clone(), convert(v));
                    }
                }
            }
            let discriminator = map.get("discriminator").unwrap_or(&Value::Null);
            if let (Some(tag), Some(Value::Object(mapping)), true) =
                (discriminator["propertyName"].as_str(), discriminator.get("mapping"), out.contains_key("oneOf"))
            {
                out.remove("oneOf");
                let cases: Vec<Value> = mapping
                    .iter()
                    .map(|(value, target)| {
                        let target = target.as_str().unwrap_or_default().replace("#/components/schemas/", "#/$defs/");
                        json!({ "if": { "properties": { tag: { "const": value } }, "required": [tag] }, "then": { "$ref": target } })
                    })
                    .collect();
                let tags: Vec<&String> = mapping.keys().collect();
                out.insert("allOf".into(), Value::Array(cases));
                out.insert("required".into(), json!([tag]));
                if let Value::Object(props) = out.entry("properties").or_insert_with(|| json!({})) {
                    props.insert(tag.to_owned(), json!({ "enum": tags }));
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = out.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else if let Some(Value::Array(alts)) = out.get_mut("anyOf") {
                    alts.push(json!({ "type": "null" }));
                } else {
                    return json!({ "anyOf": [Value::Object(out), { "type": "null" }] });
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The name of the variant of a `$defs` entry that `allOf` members use.
const OPEN: &str = "__open";

/// Forbids undeclared properties on every object schema that lists its
/// properties (or composes them with `allOf`) and says nothing about
/// others: the simulator inventing a field is drift too. Request schemas
/// keep the vendor's own choice. `allOf` members are parts of one object,
/// so they stay open themselves (their `$ref`s point at the `__open`
/// variant) and the composing schema judges the whole; `if` conditions are
/// left alone.
fn strict(node: &mut Value, top: bool) {
    match node {
        Value::Array(items) => items.iter_mut().for_each(|i| strict(i, true)),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), v) {
                    ("properties" | "$defs", Value::Object(props)) => props.values_mut().for_each(|p| strict(p, true)),
                    ("allOf", Value::Array(parts)) => {
                        for part in parts {
                            match part.get("$ref").and_then(Value::as_str) {
                                Some(r) if r.starts_with("#/$defs/") && !r.ends_with(OPEN) => part["$ref"] = Value::from(format!("{r}{OPEN}")),
                                Some(_) => {}
                                None => strict(part, false),
                            }
                        }
                    }
                    ("if" | "$ref", _) => {}
                    (_, v) => strict(v, true),
                }
            }
            let composes = map.contains_key("properties") || map.contains_key("allOf");
            if top && composes && !map.contains_key("additionalProperties") && !map.contains_key("unevaluatedProperties") {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
        }
        _ => {}
    }
}

/// Every violation of `schema` (an OpenAPI schema of `spec`) by `instance`.
/// Formats are asserted (`uuid`, `date-time`, ...); formats JSON Schema
/// does not know (`unix-time`, `currency`, `binary`) are ignored.
pub(crate) fn validate(spec: &Contract, schema: &Value, instance: &Value, strict_objects: bool) -> Vec<String> {
    let mut root = convert(schema);
    let mut defs = spec.defs.clone();
    if strict_objects {
        if let Value::Object(named) = &defs {
            let open: Map<String, Value> = named
                .iter()
                .map(|(name, s)| {
                    let mut s = s.clone();
                    strict(&mut s, false);
                    (format!("{name}{OPEN}"), s)
                })
                .collect();
            for (name, s) in named.clone() {
                let mut s = s;
                strict(&mut s, true);
                defs[name] = s;
            }
            defs.as_object_mut().expect("an object").extend(open);
        }
        strict(&mut root, true);
    }
    let wrapper = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs, "allOf": [root] });
    let validator =
        jsonschema::draft202012::options().should_validate_formats(true).build(&wrapper).expect("the pinned schema compiles");
    validator.iter_errors(instance).map(|e| format!("at {:?}: {e}", e.instance_path().to_string())).collect()
}

/// The schemas a dotted path (`a.b`, `*` = array items) may land on, through
/// `$ref`, `anyOf`/`oneOf`/`allOf`, `properties` and `additionalProperties`.
fn candidates(spec: &Contract, schema: &Value, path: &[&str]) -> Vec<Value> {
    let schema = match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(p) => spec.doc.pointer(p).cloned().unwrap_or(Value::Null),
        None => schema.clone(),
    };
    let mut out = Vec::new();
    for key in ["anyOf", "oneOf", "allOf"] {
        for alt in schema[key].as_array().into_iter().flatten() {
            out.extend(candidates(spec, alt, path));
        }
    }
    let Some((first, rest)) = path.split_first() else {
        out.push(schema);
        return out;
    };
    let next = if *first == "*" {
        schema.get("items").cloned()
    } else {
        schema["properties"].get(*first).cloned().or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()).cloned())
    };
    if let Some(next) = next {
        out.extend(candidates(spec, &next, rest));
    }
    out
}

/// Whether a field path exists in the schema.
pub(crate) fn exists(spec: &Contract, schema: &Value, path: &str) -> bool {
    !candidates(spec, schema, &path.split('.').collect::<Vec<_>>()).is_empty()
}

/// A Stripe form as the JSON object Stripe reads it as (`a[b]=c` ->
/// `{"a":{"b":"c"}}`), values typed by the schema; and the fields the
/// schema does not declare.
pub(crate) fn form_to_json(spec: &Contract, schema: &Value, body: &[u8]) -> (Value, Vec<String>) {
    let mut root = Map::new();
    let mut undeclared = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        let path: Vec<&str> = k.split('[').map(|s| s.trim_end_matches(']')).collect();
        let leaves = candidates(spec, schema, &path);
        if leaves.is_empty() {
            undeclared.push(k.to_string());
        }
        let is = |t: &str| leaves.iter().any(|l| l["type"] == t || l["type"].as_array().is_some_and(|a| a.iter().any(|x| x == t)));
        let value = match (v.parse::<i64>(), v.as_ref()) {
            (Ok(n), _) if is("integer") => Value::from(n),
            (_, "true" | "false") if is("boolean") => Value::from(v == "true"),
            _ => Value::from(v.as_ref()),
        };
        let mut node = &mut root;
        for (i, seg) in path.iter().enumerate() {
            if i + 1 == path.len() {
                node.insert((*seg).to_owned(), value.clone());
            } else {
                let entry = node.entry((*seg).to_owned()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                node = entry.as_object_mut().expect("just made an object");
            }
        }
    }
    (Value::Object(root), undeclared)
}

/// The form with every `from[...]` field renamed `to[...]`, and whether any was.
pub(crate) fn rename_form_fields(body: &[u8], from: &str, to: &str) -> (Vec<u8>, bool) {
    let mut renamed = false;
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(body) {
        match k.strip_prefix(from).filter(|rest| rest.starts_with('[')) {
            Some(rest) => {
                renamed = true;
                out.append_pair(&format!("{to}{rest}"), &v);
            }
            None => {
                out.append_pair(&k, &v);
            }
        }
    }
    (out.finish().into_bytes(), renamed)
}

/// A `multipart/form-data` body as the object its schema describes: each
/// part by name, text as a string, a file as its file name (a file is a
/// `string`/`binary` in OpenAPI). `None` when it is not multipart.
pub(crate) fn multipart_to_json(content_type: &str, body: &[u8]) -> Option<Value> {
    let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    let text = String::from_utf8_lossy(body);
    let mut parts = Map::new();
    for part in text.split(&format!("--{boundary}")).skip(1) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else { continue };
        let attr = |name: &str| head.split(';').find_map(|a| a.trim().strip_prefix(&format!("{name}=\""))?.split('"').next().map(str::to_owned));
        let Some(name) = attr("name") else { continue };
        let value = attr("filename").unwrap_or_else(|| value.strip_suffix("\r\n").unwrap_or(value).to_owned());
        parts.insert(name, Value::from(value));
    }
    Some(Value::Object(parts))
}

pub(crate) fn query_names(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, _)| k.into_owned()).collect()
}

/// One request through the proxy and the simulator's answer.
#[derive(Clone, Debug)]
pub(crate) struct Exchange {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) request_content_type: String,
    pub(crate) request_body: Bytes,
    pub(crate) status: u16,
    pub(crate) response_body: Bytes,
}

#[derive(Default)]
struct Log {
    upstream: Option<String>,
    exchanges: Vec<Exchange>,
    hooks: Vec<Value>,
}

/// A proxy that records every exchange and every webhook delivered to `/hooks`.
pub(crate) struct Recorder {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    http: reqwest::Client,
}

type Shared = (Arc<Mutex<Log>>, reqwest::Client);

impl Recorder {
    pub(crate) async fn start() -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let http = reqwest::Client::new();
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(hook))
            .fallback(proxy)
            .with_state((Arc::clone(&log), http.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, log, http }
    }

    pub(crate) fn forward_to(&self, upstream: &str) {
        self.lock().upstream = Some(upstream.trim_end_matches('/').to_owned());
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn hook_url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// A request of our own through the proxy, e.g. to provoke a 404.
    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) {
        let mut req = self.http.get(format!("{}{path}", self.base_url()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("proxy answers");
    }

    pub(crate) fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits until `n` webhooks arrived (or `within` passed) and returns them.
pub(crate) async fn wait_for(recorder: &Recorder, n: usize, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let hooks = recorder.lock().hooks.clone();
        if hooks.len() >= n || tokio::time::Instant::now() >= deadline {
            return hooks;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn hook(State((log, _)): State<Shared>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| json!({ "unparseable": e.to_string() }));
    log.lock().unwrap_or_else(|e| e.into_inner()).hooks.push(v);
    StatusCode::OK
}

async fn proxy(State((log, http)): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let upstream = log.lock().unwrap_or_else(|e| e.into_inner()).upstream.clone().expect("forward_to before use");
    let query = uri.query().unwrap_or("").to_owned();
    let url = format!("{upstream}{}{}", uri.path(), if query.is_empty() { String::new() } else { format!("?{query}") });
    let mut req = http.request(method.clone(), url).body(body.clone());
    for (k, v) in &headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection") {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.expect("simulator answers");
    let status = resp.status();
    let resp_headers = resp.headers().clone();
    let response_body = resp.bytes().await.expect("simulator body");
    log.lock().unwrap_or_else(|e| e.into_inner()).exchanges.push(Exchange {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        request_content_type: headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        request_body: body,
        status: status.as_u16(),
        response_body: response_body.clone(),
    });
    let mut out = (status, response_body).into_response();
    for (k, v) in &resp_headers {
        if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

/// Every field an adapter reads (`(schema, dotted path)`) must exist in the
/// vendor's schema.
pub(crate) fn fields_read(spec: &Contract, fields: &[(&str, &str)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(schema, path)| !exists(spec, &spec.schema_ref(schema), path))
        .map(|(schema, path)| format!("adapter reads {schema}.{path}, which the schema does not declare"))
        .collect()
}

/// Recorded JSON exchanges against the spec: the operation exists, every
/// query name is declared, bodies of `body_methods` validate against the
/// request schema, and each response (but a bodiless 204) against its own.
pub(crate) fn check_json_exchanges(spec: &Contract, exchanges: &[Exchange], body_methods: &[&str]) -> Vec<String> {
    let mut findings = Vec::new();
    for x in exchanges {
        let Some((template, op)) = spec.operation(&x.method, &x.path) else {
            findings.push(format!("{} {}: not an operation of the pinned spec", x.method, x.path));
            continue;
        };
        let at = format!("{} {template}", x.method);
        for name in query_names(&x.query) {
            if !spec.declares_query(op, &name) {
                findings.push(format!("{at}: query parameter {name} is not declared"));
            }
        }
        if body_methods.contains(&x.method.as_str()) {
            match (spec.request_schema(op, "application/json"), serde_json::from_slice::<Value>(&x.request_body)) {
                (Some(schema), Ok(body)) => findings.extend(validate(spec, &schema, &body, true).into_iter().map(|e| format!("{at} request: {e}"))),
                (None, _) => findings.push(format!("{at}: no JSON request schema")),
                (_, Err(e)) => findings.push(format!("{at}: the body does not parse: {e}")),
            }
        }
        if x.status != 204 {
            findings.extend(spec.check_response(op, &at, x.status, &x.response_body));
        }
    }
    findings
}
