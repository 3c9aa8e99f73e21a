//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request, view and problem types, so it cannot drift
//! from the code without the staleness test failing. Committed as
//! `services/gateway/openapi.json`, served at `GET /openapi.json`, and
//! regenerated with `cargo run -p gateway -- openapi`.

use crate::cards::{CardCommandView, CardFormRequest, CardList, CardView, IssueCardRequest, ShippingRequest, TransitionAction, TransitionRequest};
use crate::openbanking::{ConsentList, ConsentRequest, ConsentView, HandoffView, PaymentTermsRequest, ScopeRequest};
use crate::openbanking_actions::{CompletionRequest, DatasetRequest, RefreshRequest, RevocationRequest};
use crate::openbanking_payments::{PaymentRequest, PaymentView};
use crate::aml::{ListRequest, MatchView, ScreenedSubject, ScreeningRequest, ScreeningView, SubjectKindRequest};
use crate::fraud::{EventRequest, ScoreRequest, ScoreView, TransactionRequest};
use crate::kyc::{DocumentKindRequest, DocumentRequest, KycCheckRequest, KycCheckView, PersonRequest};
use crate::onboarding::{ApplicantRequest, ApplicationList, ApplicationRequest, ApplicationView, DecisionRequest, EvidenceRequest, StepRequest, VerdictRequest};
use crate::payouts::{BeneficiaryRequest, PayoutList, PayoutRequest, PayoutView, RailRequest, ViewError};
use crate::problem::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::OpenApi;

/// Where the committed document lives, from the workspace root.
pub const COMMITTED_PATH: &str = "services/gateway/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchyard gateway",
        version = "1",
        description = "Product-facing API: POST publishes a command and answers 202 with the resource's URL; GET answers its state. Every POST needs an Idempotency-Key. Errors are RFC 9457 problems carrying our code and class (transient, permanent, manual_repair, compliance_hold)."
    ),
    paths(
        crate::payouts::post_payout, crate::payouts::list_payouts, crate::payouts::get_payout,
        crate::kyc::post_check, crate::kyc::get_check,
        crate::aml::post_screening, crate::aml::get_screening,
        crate::fraud::post_score, crate::fraud::get_score,
        crate::onboarding::post_application, crate::onboarding::list_applications, crate::onboarding::get_application,
        crate::onboarding::post_evidence, crate::onboarding::post_decision,
        crate::cards::post_card, crate::cards::list_cards, crate::cards::get_card, crate::cards::post_transition,
        crate::openbanking::post_consent, crate::openbanking::list_consents, crate::openbanking::get_consent,
        crate::openbanking_actions::post_completion, crate::openbanking_actions::post_refresh, crate::openbanking_actions::post_revocation,
        crate::openbanking_payments::post_payment, crate::openbanking_payments::get_payment,
    ),
    components(schemas(
        PayoutRequest, BeneficiaryRequest, RailRequest, PayoutView, PayoutList, ViewError, Problem,
        KycCheckRequest, PersonRequest, DocumentRequest, DocumentKindRequest, KycCheckView,
        ScreeningRequest, ScreenedSubject, SubjectKindRequest, ListRequest, ScreeningView, MatchView,
        ScoreRequest, EventRequest, TransactionRequest, ScoreView,
        ApplicationRequest, ApplicantRequest, EvidenceRequest, DecisionRequest, StepRequest, VerdictRequest, ApplicationView, ApplicationList,
        IssueCardRequest, CardFormRequest, ShippingRequest, TransitionRequest, TransitionAction, CardView, CardCommandView, CardList,
        ConsentRequest, ScopeRequest, PaymentTermsRequest, CompletionRequest, RefreshRequest, DatasetRequest, RevocationRequest,
        ConsentView, HandoffView, ConsentList, PaymentRequest, PaymentView,
    )),
    modifiers(&BearerKey),
    tags(
        (name = "payouts", description = "Payouts to a beneficiary's account"),
        (name = "kyc", description = "Identity verification: a document check, and a face match when a selfie is given"),
        (name = "aml", description = "Screening against sanctions, PEP, watchlist and adverse-media lists"),
        (name = "fraud", description = "Fraud scores and decisions for onboarding, login, payment and payout events"),
        (name = "onboarding", description = "Onboarding applications: KYC, then AML, then fraud, with evidence and analysts' decisions"),
        (name = "cards", description = "Cards issued at a processor and moved through their lifecycle; never a PAN or a processor token"),
        (name = "openbanking", description = "Open banking consents (the user's grant, through the provider's hand-off), their data refreshes, and the payment a consent is for"),
    )
)]
struct ApiDoc;

/// The two bearer schemes: `Authorization: Bearer <team key>`, or an
/// OAuth2 access token. Each operation's `api_key` requirement gets an
/// `oauth2` alternative with the same scope.
struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("Your team's API key")).build()),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An OAuth2 access token (client credentials grant; a JWT as RFC 9068 describes) from the issuer this deployment trusts, \
                         for a client id configured for your team. The call needs the listed scope in both the token's `scope` claim and your team's scopes; \
                         a token that does not verify is answered 401 with `WWW-Authenticate: Bearer error=\"invalid_token\"`, a missing scope 403.",
                    ))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for security in operations.into_iter().flatten().filter_map(|op| op.security.as_mut()) {
                // utoipa keeps a requirement's scopes private; its JSON has them.
                let scopes: Vec<Vec<String>> = security
                    .iter()
                    .filter_map(|requirement| serde_json::to_value(requirement).ok()?.get("api_key").cloned())
                    .filter_map(|scopes| serde_json::from_value(scopes).ok())
                    .collect();
                security.extend(scopes.into_iter().map(|scopes| SecurityRequirement::new("oauth2", scopes)));
            }
        }
    }
}

/// The document as committed: pretty JSON and a final newline.
pub fn document() -> String {
    let text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    // utoipa 5.5 writes a link's fields in snake case; OpenAPI names them
    // `operationId` and `operationRef` (no schema of ours has such a field).
    let mut text = text.replace("\"operation_id\": ", "\"operationId\": ").replace("\"operation_ref\": ", "\"operationRef\": ");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(COMMITTED_PATH);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = document();
        let first_difference = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).map(|n| n + 1);
        assert!(
            committed == generated,
            "{COMMITTED_PATH} is stale (first difference at line {first_difference:?}): run `cargo run -p gateway -- openapi`"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_route_and_status() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("json");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
        let post = &doc["paths"]["/v1/payouts"]["post"];
        for status in ["202", "400", "401", "403", "409", "413", "422", "429", "503"] {
            assert!(post["responses"][status].is_object(), "POST /v1/payouts documents {status}");
        }
        assert!(doc["paths"]["/v1/payouts/{id}"]["get"]["responses"]["304"].is_object());
        for (path, scope) in [
            ("/v1/kyc/checks", "kyc:write"),
            ("/v1/aml/screenings", "aml:write"),
            ("/v1/fraud/scores", "fraud:write"),
            ("/v1/onboarding/applications", "onboarding:write"),
            ("/v1/onboarding/applications/{id}/evidence", "onboarding:write"),
            ("/v1/onboarding/applications/{id}/decisions", "onboarding:decide"),
            ("/v1/cards", "cards:write"),
            ("/v1/cards/{id}/transitions", "cards:write"),
            ("/v1/openbanking/consents", "openbanking:write"),
            ("/v1/openbanking/consents/{id}/completion", "openbanking:write"),
            ("/v1/openbanking/consents/{id}/refresh", "openbanking:write"),
            ("/v1/openbanking/consents/{id}/revocation", "openbanking:write"),
            ("/v1/openbanking/payments", "openbanking:write"),
        ] {
            let post = &doc["paths"][path]["post"];
            for status in ["202", "400", "401", "403", "409", "413", "422", "429", "503"] {
                assert!(post["responses"][status].is_object(), "POST {path} documents {status}");
            }
            assert_eq!(post["security"][0]["api_key"][0], scope, "POST {path}");
            assert_eq!(post["security"][1]["oauth2"][0], scope, "POST {path}: or an access token with the same scope");
            assert!(post["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["name"] == "Idempotency-Key" && p["required"] == true)), "POST {path}");
        }
        for path in [
            "/v1/kyc/checks/{id}",
            "/v1/aml/screenings/{id}",
            "/v1/fraud/scores/{id}",
            "/v1/onboarding/applications/{id}",
            "/v1/cards/{id}",
            "/v1/openbanking/consents/{id}",
            "/v1/openbanking/payments/{id}",
        ] {
            assert!(doc["paths"][path]["get"]["responses"]["304"].is_object(), "GET {path}");
        }
        assert!(doc["components"]["schemas"]["Problem"]["properties"]["type"].is_object(), "serde's rename is honoured");
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
        assert_eq!(doc["components"]["securitySchemes"]["oauth2"]["bearerFormat"], "JWT");
        assert_eq!(doc["paths"]["/v1/payouts/{id}"]["get"]["security"][1]["oauth2"][0], "payouts:read");
    }

    /// Every POST's 202 links to the GET of the resource it answers, by an
    /// operation the document has, with the `id` it takes: from the answer's
    /// body for a new resource, from the path for an action on one.
    #[test]
    fn every_accepted_answer_links_to_its_resource() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        let gets: std::collections::HashMap<&str, &str> = paths
            .iter()
            .filter_map(|(path, item)| Some((item["get"]["operationId"].as_str()?, path.as_str())))
            .collect();
        let mut posts = 0;
        for (path, item) in paths {
            let Some(links) = item["post"]["responses"]["202"]["links"].as_object() else {
                assert!(item["post"].is_null(), "POST {path}: its 202 has no links");
                continue;
            };
            posts += 1;
            assert_eq!(links.len(), 1, "POST {path}");
            let link = links.values().next().expect("a link");
            let target = link["operationId"].as_str().and_then(|id| gets.get(id)).unwrap_or_else(|| panic!("POST {path}: {link} names no GET"));
            assert!(target.ends_with("/{id}") && path.starts_with(target.trim_end_matches("/{id}")), "POST {path} links to {target}");
            let expected = if path.contains("{id}") { "$request.path.id" } else { "$response.body#/id" };
            assert_eq!(link["parameters"]["id"], expected, "POST {path}");
        }
        assert_eq!(posts, 14, "every POST");
    }
}
