//! Onfido API v3.6 (regional hosts `api.{eu,us,ca}.onfido.com`).
//!
//! Flow: `POST /v3.6/applicants`, `POST /v3.6/documents` (multipart, one per
//! side), `POST /v3.6/live_photos` (multipart, when a selfie is given),
//! `POST /v3.6/checks` with `report_names`, then `GET /v3.6/checks/{id}`
//! until `status` leaves `in_progress`, and `GET /v3.6/reports?check_id=`
//! for the report results that say why.
//!
//! Auth: `Authorization: Token token=<api token>`.
//! Idempotency: UNCONFIRMED that Onfido honours `Idempotency-Key`; we send
//! `<key>.<step>` on every POST and the simulator deduplicates on it. Against
//! a vendor that ignores it, a redelivery would create a second applicant
//! and check (costly, not harmful: no money moves).
//! Files: the command carries references into the bank's document store;
//! fetching the bytes is the document store's job, so the reference itself
//! is uploaded as the file content (UNCONFIRMED: real Onfido would reject it).
//! Contract: checked against Onfido's own OpenAPI document
//! (tests/contracts/onfido, tests/tests/kyc_contracts.rs).

mod transformers;
pub(crate) mod webhook;

use super::{KycVerdict, Polling};
use crate::http::{self, traced, Transport};
use crate::multipart::Multipart;
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::kyc::KycCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{map_error, ApplicantRequest, CheckRequest, OnfidoCheck, OnfidoError, OnfidoReports, OnfidoResource};

#[derive(Debug, Clone)]
pub struct OnfidoAdapter {
    name: String,
    base_url: String,
    api_token: ApiKey,
    polling: Polling,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl OnfidoAdapter {
    pub fn new(name: impl Into<String>, base_url: &str, api_token: impl Into<ApiKey>, transport: Transport, polling: Polling) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { name: name.into(), base_url, api_token: api_token.into(), polling, http: http::client(transport)?.into() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn post(&self, path: &str, key: &str, step: &str, ctx: &CallContext) -> reqwest::RequestBuilder {
        let req = self
            .http
            .current()
            .post(format!("{}/v3.6{path}", self.base_url))
            .header("Authorization", format!("Token token={}", self.api_token.current().expose()))
            .header("Idempotency-Key", format!("{key}.{step}"));
        traced(req, ctx)
    }

    fn get(&self, path: &str, ctx: &CallContext) -> reqwest::RequestBuilder {
        let req = self
            .http
            .current()
            .get(format!("{}/v3.6{path}", self.base_url))
            .header("Authorization", format!("Token token={}", self.api_token.current().expose()));
        traced(req, ctx)
    }

    pub async fn verify(&self, cmd: &KycCommand, key: &str, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        let applicant: OnfidoResource =
            http::send_json::<_, OnfidoError>(self.post("/applicants", key, "applicant", ctx).json(&ApplicantRequest::from(cmd)), map_error).await?;
        self.check(cmd, key, &applicant.id, ctx).await.map_err(super::later_step)
    }

    /// Uploads, check, polling and reports for an existing applicant.
    async fn check(&self, cmd: &KycCommand, key: &str, applicant_id: &str, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        let mut document_ids = Vec::new();
        let sides = std::iter::once(("front", &cmd.document.front_ref)).chain(cmd.document.back_ref.as_ref().map(|b| ("back", b)));
        for (side, file_ref) in sides {
            let (content_type, body) = Multipart::new()
                .text("applicant_id", applicant_id)
                .text("type", transformers::document_type(cmd.document.kind))
                .text("side", side)
                .text("issuing_country", &cmd.document.issuing_country)
                .file("file", &format!("{side}.jpg"), "image/jpeg", file_ref.as_bytes())
                .finish();
            let req = self.post("/documents", key, &format!("document.{side}"), ctx).header("Content-Type", content_type).body(body);
            let doc: OnfidoResource = http::send_json::<_, OnfidoError>(req, map_error).await?;
            document_ids.push(doc.id);
        }
        let with_selfie = if let Some(selfie) = &cmd.selfie_ref {
            let (content_type, body) =
                Multipart::new().text("applicant_id", applicant_id).file("file", "selfie.jpg", "image/jpeg", selfie.as_bytes()).finish();
            let req = self.post("/live_photos", key, "live_photo", ctx).header("Content-Type", content_type).body(body);
            http::send_json::<OnfidoResource, OnfidoError>(req, map_error).await?;
            true
        } else {
            false
        };
        let check_req = CheckRequest::new(applicant_id, document_ids, with_selfie);
        let check: OnfidoCheck = http::send_json::<_, OnfidoError>(self.post("/checks", key, "check", ctx).json(&check_req), map_error).await?;
        let check_id = check.id.clone();
        let done = self
            .polling
            .until("onfido check", || async {
                let c: OnfidoCheck = http::send_json::<_, OnfidoError>(self.get(&format!("/checks/{check_id}"), ctx), map_error).await?;
                Ok(c.is_settled().then_some(c))
            })
            .await?;
        let reports: OnfidoReports =
            http::send_json::<_, OnfidoError>(self.get(&format!("/reports?check_id={check_id}"), ctx), map_error).await?;
        transformers::verdict(&done, &reports)
    }
}

crate::tls_rotation::with_client_field!(OnfidoAdapter);
