//! OAuth grants (TrueLayer's Data API): the access token lives an hour, the
//! refresh token renews it and is rotated by each renewal, so the old one
//! is refused afterwards. Two rules follow:
//!
//! - A renewed grant is stored (sealed, compare-and-set on the consent's
//!   version) before anything uses it: a renewal whose answer we drop
//!   leaves only a dead refresh token behind, and the user must come back.
//! - A renewal refused as `invalid_grant` is LOGIN_REQUIRED only if the
//!   grant we used is still the stored one: another delivery of the same
//!   consent may have rotated it first, and then its grant is the good one.
//!
//! The access token is renewed before a call when the consent machine says
//! it is about to lapse (`renew_access_first`), and once after a 401.

use super::consent::Held;
use super::{broken, OpenBankingHandler, Stop, Turn};
use std::future::Future;
use switchyard_adapters::openbanking::{ObFailure, OpenBankingProvider};
use switchyard_adapters::{CallContext, Secret};
use switchyard_bus::Failure;
use switchyard_canonical::now_ms;
use switchyard_canonical::openbanking_consent::{Consent, ConsentSignal};

impl OpenBankingHandler {
    /// Renews the consent's grant and stores it; the new access token, or
    /// why the provider refused (LOGIN_REQUIRED when the grant ended).
    pub(super) async fn renew_grant(&self, turn: &mut Turn<'_>, held: &mut Held) -> Result<Result<Secret, ObFailure>, Stop> {
        let grant = self.token(held)?;
        let provider = held.row.provider.clone();
        let renewed = self.call(turn, &provider, "renew_grant", |p, ctx| {
            let grant = grant.clone();
            async move { p.renew_grant(&ctx, &grant).await }
        });
        let granted = match renewed.await? {
            Ok(granted) => granted,
            Err(ObFailure::LoginRequired) => return self.renewed_elsewhere(held).await,
            Err(failure) => return Ok(Err(failure)),
        };
        let sealed = self.vault.seal(&held.row.consent_id, &granted.access_token).map_err(broken)?;
        // The stored consent may have moved meanwhile (another command of
        // this consent): the grant renewed here is the newest, so it is put
        // on whatever is stored now, unless the consent ended.
        for _ in 0..3 {
            held.consent.observe(ConsentSignal::AccessRenewed { access_expires_at_ms: granted.access_expires_at_ms }, now_ms());
            let mut row = held.row.clone();
            let expected = row.version;
            row.version += 1;
            row.consent = serde_json::to_string(&held.consent).map_err(broken)?;
            row.access_token_enc = Some(sealed.clone());
            if self.consents.update(&row, expected).await? {
                held.row = row;
                tracing::info!(consent_id = %held.row.consent_id, "access token renewed with the refresh token and stored");
                return Ok(Ok(granted.access_token));
            }
            let Some(fresh) = self.reload(held).await? else { break };
            if !fresh.consent.state.usable() || fresh.row.access_token_enc.is_none() {
                break;
            }
            *held = fresh;
        }
        Err(Stop::Later(Failure::Retry {
            reason: "the consent changed while its grant was renewed".into(),
            delay: std::time::Duration::from_millis(self.retry.retry_topic_delay_ms),
        }))
    }

    /// `invalid_grant` for the grant `held` carries: the consent's own end,
    /// unless the stored grant is another one (rotated by another delivery).
    async fn renewed_elsewhere(&self, held: &mut Held) -> Result<Result<Secret, ObFailure>, Stop> {
        if let Some(fresh) = self.reload(held).await? {
            if fresh.row.access_token_enc.is_some() && fresh.row.access_token_enc != held.row.access_token_enc {
                tracing::info!(consent_id = %held.row.consent_id, "the grant was renewed by another delivery; using it");
                *held = fresh;
                return Ok(Ok(self.token(held)?));
            }
        }
        Ok(Err(ObFailure::LoginRequired))
    }

    async fn reload(&self, held: &Held) -> Result<Option<Held>, Stop> {
        let Some(row) = self.consents.load(&held.row.consent_id).await? else { return Ok(None) };
        let consent: Consent = serde_json::from_str(&row.consent).map_err(|e| broken(format!("stored consent is unreadable: {e}")))?;
        Ok(Some(Held { row, consent }))
    }

    /// [`Self::call`] with the consent's access token; a 401 renews the
    /// grant once (stored first) and repeats the call with the new token.
    pub(super) async fn call_fresh<'s, T, F, Fut>(
        &'s self,
        turn: &mut Turn<'_>,
        held: &mut Held,
        token: &mut Secret,
        operation: &str,
        f: F,
    ) -> Result<Result<T, ObFailure>, Stop>
    where
        F: Fn(&'s OpenBankingProvider, CallContext, Secret) -> Fut,
        Fut: Future<Output = Result<T, ObFailure>>,
    {
        let provider = held.row.provider.clone();
        let first = {
            let current = token.clone();
            self.call(turn, &provider, operation, |p, ctx| f(p, ctx, current.clone())).await?
        };
        if !matches!(first, Err(ObFailure::AccessExpired)) {
            return Ok(first);
        }
        tracing::info!(operation, "the provider refused the access token; renewing the grant once");
        match self.renew_grant(turn, held).await? {
            Ok(renewed) => {
                *token = renewed.clone();
                self.call(turn, &provider, operation, |p, ctx| f(p, ctx, renewed.clone())).await
            }
            Err(failure) => Ok(Err(failure)),
        }
    }
}
