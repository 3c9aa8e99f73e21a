//! Sumsub (`api.sumsub.com`).
//!
//! Flow: `POST /resources/applicants?levelName=<level>` with our key as
//! `externalUserId`; if the applicant's review has not started, upload the
//! document sides and the selfie (`POST /resources/applicants/{id}/info/idDoc`,
//! multipart `metadata` + `content`) and request a review
//! (`POST /resources/applicants/{id}/status/pending`); then poll
//! `GET /resources/applicants/{id}/one` until `review.reviewStatus` is
//! `completed` (or `onHold`).
//!
//! Auth: every request is signed: `X-App-Token`, `X-App-Access-Ts` (Unix
//! seconds) and `X-App-Access-Sig` = hex HMAC-SHA256(secret key,
//! ts + METHOD + path?query + body).
//! Idempotency: `externalUserId` is the natural key. A second create for it
//! answers 409; the adapter then reads the existing applicant by
//! `GET /resources/applicants/-;externalUserId=<key>/one` and resumes it.
//! Uploads are not idempotent at Sumsub, which is why they are skipped once
//! the review has started.
//! Files: as for Onfido, the document-store reference is uploaded as the
//! file content (UNCONFIRMED: real Sumsub would reject it).
//! Contract: Sumsub publishes no machine-readable API definition (tests/contracts/README.md).

mod transformers;
pub(crate) mod webhook;

use super::{KycVerdict, Polling};
use crate::http::{self, traced, Transport};
use crate::multipart::Multipart;
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchyard_canonical::kyc::KycCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use transformers::{map_error, ApplicantRequest, IdDocMetadata, SumsubApplicant, SumsubError};

#[derive(Debug, Clone)]
pub struct SumsubAdapter {
    name: String,
    base_url: String,
    app_token: ApiKey,
    secret_key: ApiKey,
    level_name: String,
    polling: Polling,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl SumsubAdapter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        app_token: impl Into<ApiKey>,
        secret_key: impl Into<ApiKey>,
        level_name: impl Into<String>,
        transport: Transport,
        polling: Polling,
    ) -> Result<Self, AdapterError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self {
            name: name.into(),
            base_url,
            app_token: app_token.into(),
            secret_key: secret_key.into(),
            level_name: level_name.into(),
            polling,
            http: http::client(transport)?.into(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A signed request; `path` includes the query string.
    fn signed(&self, method: reqwest::Method, path: &str, content_type: Option<&str>, body: Vec<u8>, ctx: &CallContext) -> reqwest::RequestBuilder {
        let ts = switchyard_canonical::now_ms() / 1000;
        let sig = signature(self.secret_key.current().expose(), ts, method.as_str(), path, &body);
        let mut req = self
            .http
            .current()
            .request(method, format!("{}{path}", self.base_url))
            .header("X-App-Token", self.app_token.current().expose())
            .header("X-App-Access-Ts", ts.to_string())
            .header("X-App-Access-Sig", sig);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        traced(req.body(body), ctx)
    }

    async fn applicant(&self, cmd: &KycCommand, key: &str, ctx: &CallContext) -> Result<SumsubApplicant, AdapterError> {
        let body = serde_json::to_vec(&ApplicantRequest::new(cmd, key))
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, e.to_string()))?;
        let path = format!("/resources/applicants?levelName={}", self.level_name);
        let created = http::send_json::<SumsubApplicant, SumsubError>(
            self.signed(reqwest::Method::POST, &path, Some("application/json"), body, ctx),
            map_error,
        )
        .await;
        match created {
            Err(e) if e.http_status == Some(409) => {
                // Created by an earlier delivery: resume that applicant.
                let path = format!("/resources/applicants/-;externalUserId={}/one", crate::encode::path_segment(key));
                http::send_json::<SumsubApplicant, SumsubError>(self.signed(reqwest::Method::GET, &path, None, Vec::new(), ctx), map_error).await
            }
            other => other,
        }
    }

    pub async fn verify(&self, cmd: &KycCommand, key: &str, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        let applicant = self.applicant(cmd, key, ctx).await?;
        self.review(cmd, applicant, ctx).await.map_err(super::later_step)
    }

    /// Uploads (unless the review started), review request and polling.
    async fn review(&self, cmd: &KycCommand, applicant: SumsubApplicant, ctx: &CallContext) -> Result<KycVerdict, AdapterError> {
        let id = applicant.id.clone();
        if applicant.review_not_started() {
            for (meta, file_ref) in IdDocMetadata::for_command(cmd) {
                let meta = serde_json::to_string(&meta).map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, e.to_string()))?;
                let (ct, body) = Multipart::new().text("metadata", &meta).file("content", "image.jpg", "image/jpeg", file_ref.as_bytes()).finish();
                let path = format!("/resources/applicants/{id}/info/idDoc");
                http::send_json::<serde_json::Value, SumsubError>(self.signed(reqwest::Method::POST, &path, Some(&ct), body, ctx), map_error).await?;
            }
            let path = format!("/resources/applicants/{id}/status/pending");
            http::send_json::<serde_json::Value, SumsubError>(self.signed(reqwest::Method::POST, &path, None, Vec::new(), ctx), map_error).await?;
        }
        let reviewed = self
            .polling
            .until("sumsub review", || async {
                let path = format!("/resources/applicants/{id}/one");
                let a: SumsubApplicant =
                    http::send_json::<_, SumsubError>(self.signed(reqwest::Method::GET, &path, None, Vec::new(), ctx), map_error).await?;
                Ok(a.review_settled().then_some(a))
            })
            .await?;
        transformers::verdict(&reviewed)
    }
}

/// Hex HMAC-SHA256 over `ts + METHOD + path + body`, Sumsub's request signature.
pub fn signature(secret: &str, ts: i64, method: &str, path: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot happen.
        return String::new();
    };
    mac.update(ts.to_string().as_bytes());
    mac.update(method.as_bytes());
    mac.update(path.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

crate::tls_rotation::with_client_field!(SumsubAdapter);
