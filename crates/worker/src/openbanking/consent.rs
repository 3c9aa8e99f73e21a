//! Steps 3 to 5 for consent commands: judge the command against the stored
//! consent, hold one provider conversation, store the change with its
//! answer, publish its event. Refreshes continue in [`super::refresh`].

use super::{broken, OpenBankingHandler, Stop, Turn};
use switchyard_adapters::openbanking::{Granted, HandoffRequest, ObFailure};
use switchyard_adapters::Secret;
use switchyard_canonical::openbanking::OpenBankingAction;
use switchyard_canonical::openbanking_consent::{decide, Consent, ConsentObserved, ConsentSignal, ConsentState, Decision, ProviderCall};
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{Handoff, HandoffKind, OpenBankingKind, OpenBankingOutcome};
use switchyard_canonical::{now_ms, ErrorClass, ErrorCode, OutcomeError};
use switchyard_store::openbanking::ConsentRow;

/// What a consent change answered and published, stored with the change
/// (`last_outcome`) so a redelivery repeats both without a provider call.
#[derive(serde::Serialize, serde::Deserialize)]
struct Applied {
    outcome: OpenBankingOutcome,
    event: Option<OpenBankingEvent>,
}

/// A consent as the handler holds it: its row and its machine.
pub(super) struct Held {
    pub row: ConsentRow,
    pub consent: Consent,
}

impl OpenBankingHandler {
    pub(super) async fn run(&self, turn: &mut Turn<'_>) -> Result<OpenBankingOutcome, Stop> {
        let command = turn.command;
        let row = self.consents.load(&command.consent_id).await?;
        // The consent moved under this key already: a crash came between the
        // change and the claim's completion. Answer the same, change nothing.
        // Its event may not have reached the broker: sent again under its
        // id, which consumers deduplicate.
        if let Some(row) = row.as_ref().filter(|r| r.last_key.as_deref() == Some(command.idempotency_key.as_str())) {
            if let Some(applied) = row.last_outcome.as_deref().and_then(|o| serde_json::from_str::<Applied>(o).ok()) {
                if let Some(event) = &applied.event {
                    self.publish_event(turn.ctx, event).await.map_err(Stop::Later)?;
                }
                return Ok(applied.outcome);
            }
        }
        let held = match row {
            Some(row) => {
                let consent: Consent = serde_json::from_str(&row.consent).map_err(|e| broken(format!("stored consent is unreadable: {e}")))?;
                Some(Held { row, consent })
            }
            None => None,
        };
        let now = now_ms();
        match decide(held.as_ref().map(|h| &h.consent), command, now, self.timings) {
            Decision::Reject(refused) => {
                tracing::info!(refusal = refused.code.as_str(), "command refused by the consent's state");
                let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: refused.message };
                let mut outcome = OpenBankingOutcome::rejected(command, Some(refused.code), error, now);
                fill(&mut outcome, held.as_ref());
                Ok(outcome)
            }
            Decision::AnswerWithoutCall { answer, state } => {
                let Some(mut held) = held else { return Err(broken("an answer without a call for a consent we do not hold")) };
                let from = held.consent.state;
                if state != from {
                    // A deadline passed, or a grant nothing at the provider holds was revoked.
                    if state == ConsentState::Revoked {
                        held.consent.observe(ConsentSignal::Revoked, now);
                    } else {
                        held.consent.advance(now, self.timings);
                    }
                    let outcome = self.outcome(turn, answer, Some(&held));
                    return self.commit(turn, held, from, outcome, |_| {}).await;
                }
                tracing::debug!(state = state.as_str(), "answered from the consent without a provider call");
                Ok(self.outcome(turn, answer, Some(&held)))
            }
            Decision::CallProvider(call) => {
                match (call, held) {
                    (ProviderCall::CreateHandoff { reauth }, held) => self.create(turn, held, reauth).await,
                    (ProviderCall::ExchangeAuthorization, Some(held)) => self.complete(turn, held).await,
                    (ProviderCall::Sync { datasets, renew_access_first }, Some(held)) => self.refresh(turn, held, &datasets, renew_access_first).await,
                    (ProviderCall::RemoveConnection, Some(held)) => self.revoke(turn, held).await,
                    (ProviderCall::CreatePayment { .. }, Some(held)) => self.initiate_payment(turn, held).await,
                    (_, None) => Err(broken("a provider call for a consent we do not hold")),
                }
            }
        }
    }

    /// The answer to the command, with the consent's state as it stands.
    pub(super) fn outcome(&self, turn: &Turn<'_>, kind: OpenBankingKind, held: Option<&Held>) -> OpenBankingOutcome {
        let mut outcome = OpenBankingOutcome::new(turn.command, kind, now_ms());
        fill(&mut outcome, held);
        outcome.attempts = turn.attempts;
        outcome
    }

    /// Stores the consent as `held` says (compare-and-set on its version),
    /// with the command's answer; then publishes the event of the state it
    /// entered, if it left `from`.
    pub(super) async fn commit(
        &self,
        turn: &Turn<'_>,
        held: Held,
        from: ConsentState,
        outcome: OpenBankingOutcome,
        change: impl FnOnce(&mut ConsentRow),
    ) -> Result<OpenBankingOutcome, Stop> {
        let Held { mut row, consent } = held;
        let expected = row.version;
        row.version += 1;
        let event = (consent.state != from).then(|| consent.state.event()).flatten().map(|kind| OpenBankingEvent {
            event_id: OpenBankingEvent::event_id(&row.consent_id, row.version),
            consent_id: row.consent_id.clone(),
            kind,
            provider: row.provider.clone(),
            from_consent_state: Some(from),
            to_consent_state: Some(consent.state),
            consent_expires_at_ms: consent.expires_at_ms,
            payment_id: None,
            from_payment_status: None,
            to_payment_status: None,
            payment_failure: None,
            returned_after_execution: false,
            amount_minor: None,
            currency: None,
            occurred_at_ms: consent.changed_at_ms.max(0),
            published_at_ms: now_ms(),
        });
        row.state = consent.state.as_str().to_owned();
        row.consent = serde_json::to_string(&consent).map_err(broken)?;
        row.last_key = Some(turn.command.idempotency_key.clone());
        let applied = Applied { outcome, event };
        row.last_outcome = Some(serde_json::to_string(&applied).map_err(broken)?);
        change(&mut row);
        let stored = if expected == 0 { self.consents.insert(&row).await? } else { self.consents.update(&row, expected).await? };
        if !stored {
            return Err(Stop::Later(switchyard_bus::Failure::Retry {
                reason: "the consent changed under this delivery".into(),
                delay: std::time::Duration::from_millis(self.retry.retry_topic_delay_ms),
            }));
        }
        if let Some(event) = &applied.event {
            self.publish_event(turn.ctx, event).await.map_err(Stop::Later)?;
        }
        Ok(applied.outcome)
    }

    async fn create(&self, turn: &mut Turn<'_>, held: Option<Held>, reauth: bool) -> Result<OpenBankingOutcome, Stop> {
        let command = turn.command;
        let spec = command.consent.as_ref();
        let (provider, scopes, payment_id) = match &held {
            Some(h) => (h.row.provider.clone(), h.consent.scopes.clone(), h.consent.payment_id.clone()),
            None => {
                let Some(spec) = spec else { return Err(broken("CREATE_CONSENT without its consent part passed validation")) };
                let provider = self.store.record(super::DOMAIN, &command.idempotency_key).await?.and_then(|r| r.provider).unwrap_or_default();
                (provider, spec.scopes.clone(), command.payment.as_ref().map(|p| p.payment_id.clone()))
            }
        };
        let token = match (&held, reauth) {
            (Some(h), true) => Some(self.token(h)?),
            _ => None,
        };
        let customer_ref = spec.map(|s| s.customer_ref.as_str()).unwrap_or(command.consent_id.as_str());
        let institution_id = held.as_ref().and_then(|h| h.row.institution_id.clone()).or_else(|| spec.and_then(|s| s.institution_id.clone()));
        let request = HandoffRequest {
            consent_id: &command.consent_id,
            customer_ref,
            country: spec.map(|s| s.country.as_str()).unwrap_or("US"),
            institution_id: institution_id.as_deref(),
            redirect_uri: spec.map(|s| s.redirect_uri.as_str()).unwrap_or(""),
            scopes: &scopes,
            reauth: token.as_ref(),
        };
        let result = self.call(turn, &provider, "create_handoff", |p, ctx| {
            let request = request.clone();
            async move { p.create_handoff(&ctx, &request).await }
        });
        let issued = match result.await? {
            Ok(issued) => issued,
            Err(failure) => return self.failed(turn, held, failure).await,
        };
        let now = now_ms();
        let mut held = held.unwrap_or_else(|| {
            let mut consent = Consent::requested(scopes, payment_id);
            consent.provider = Some(provider.clone());
            Held { row: new_row(&command.consent_id, &provider, institution_id.clone()), consent }
        });
        let from = held.consent.state;
        if let ConsentObserved::Contradiction { from } = held.consent.observe(ConsentSignal::HandoffIssued { expires_at_ms: issued.expires_at_ms }, now) {
            return Err(broken(format!("a hand-off was issued for a {} consent", from.as_str())));
        }
        let mut outcome = self.outcome(turn, OpenBankingKind::AuthRequired, Some(&held));
        // An OAuth provider (TrueLayer) hands out a URL to send the browser to; Plaid a Link token.
        let kind = if issued.value.starts_with("https://") || issued.value.starts_with("http://") { HandoffKind::AuthorizationUrl } else { HandoffKind::LinkToken };
        outcome.handoff = Some(Handoff { kind, value: issued.value, expires_at_ms: issued.expires_at_ms });
        self.commit(turn, held, from, outcome, |_| {}).await
    }

    async fn complete(&self, turn: &mut Turn<'_>, mut held: Held) -> Result<OpenBankingOutcome, Stop> {
        let provider = held.row.provider.clone();
        // An OAuth re-authentication (TrueLayer) brings a new authorization
        // code for new tokens; Plaid's update mode repairs the item in place.
        let new_code = turn.command.completion.as_ref().is_some_and(|c| c.authorization_code.is_some());
        let granted = if held.row.access_token_enc.is_some() && !new_code {
            // A re-authentication: Plaid repairs the item in place (its
            // update-mode public token need not be exchanged); one call
            // proves the login works again.
            let token = self.token(&held)?;
            let checked = self.call(turn, &provider, "verify_login", |p, ctx| {
                let token = token.clone();
                async move { p.accounts(&ctx, &token, false).await }
            });
            match checked.await? {
                Ok(_) => None,
                Err(failure) => return self.failed(turn, Some(held), failure).await,
            }
        } else {
            // Plaid completes with a public token, an OAuth provider (TrueLayer) with an authorization code.
            let Some(public) = turn.command.completion.as_ref().and_then(|c| c.public_token.clone().or_else(|| c.authorization_code.clone())) else {
                let mut outcome = self.outcome(turn, OpenBankingKind::Rejected, Some(&held));
                outcome.error = Some(OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: format!("{provider} completes a consent with a public_token") });
                return Ok(outcome);
            };
            let scopes = held.consent.scopes.clone();
            let exchanged = self.call(turn, &provider, "exchange", |p, ctx| {
                let (public, scopes) = (public.clone(), scopes.clone());
                async move { p.exchange(&ctx, &public, &scopes).await }
            });
            match exchanged.await? {
                Ok(granted) => Some(granted),
                // Spent: never CONSENT_ACTIVE without a token, never a generic error.
                Err(ObFailure::AuthorizationSpent { code }) => return self.spent(turn, held, &public, &code).await,
                Err(failure) => return self.failed(turn, Some(held), failure).await,
            }
        };
        let from = held.consent.state;
        let expires_at_ms = granted.as_ref().map_or(held.consent.expires_at_ms, |g| g.expires_at_ms);
        let access_expires_at_ms = granted.as_ref().map_or(held.consent.access_expires_at_ms, |g| g.access_expires_at_ms);
        held.consent.observe(ConsentSignal::Granted { expires_at_ms, access_expires_at_ms }, now_ms());
        let sealed = match &granted {
            Some(Granted { access_token, .. }) => Some(self.vault.seal(&held.row.consent_id, access_token).map_err(broken)?),
            None => held.row.access_token_enc.clone(),
        };
        let reference = granted.map(|g| g.provider_reference).or_else(|| held.row.provider_reference.clone());
        held.row.provider_reference = reference.clone();
        let outcome = self.outcome(turn, OpenBankingKind::ConsentActive, Some(&held));
        self.commit(turn, held, from, outcome, |row| {
            row.access_token_enc = sealed;
            row.provider_reference = reference;
        })
        .await
    }

    async fn revoke(&self, turn: &mut Turn<'_>, mut held: Held) -> Result<OpenBankingOutcome, Stop> {
        if held.row.access_token_enc.is_some() {
            let token = self.token(&held)?;
            let provider = held.row.provider.clone();
            let removed = self.call(turn, &provider, "remove", |p, ctx| {
                let token = token.clone();
                async move { p.remove(&ctx, &token).await }
            });
            if let Err(failure) = removed.await? {
                return self.failed(turn, Some(held), failure).await;
            }
        }
        let from = held.consent.state;
        held.consent.observe(ConsentSignal::Revoked, now_ms());
        let outcome = self.outcome(turn, OpenBankingKind::Revoked, Some(&held));
        // The token is worthless now and only a liability: wiped.
        self.commit(turn, held, from, outcome, |row| row.access_token_enc = None).await
    }

    /// The stored access token, opened.
    pub(super) fn token(&self, held: &Held) -> Result<Secret, Stop> {
        let Some(sealed) = held.row.access_token_enc.as_deref() else { return Err(broken("the consent holds no access token")) };
        self.vault.open(&held.row.consent_id, sealed).map_err(|e| broken(format!("access token does not open: {e}")))
    }

    /// A provider failure that ends the command, in our vocabulary.
    pub(super) async fn failed(&self, turn: &Turn<'_>, held: Option<Held>, failure: ObFailure) -> Result<OpenBankingOutcome, Stop> {
        let now = now_ms();
        match (failure, held) {
            (ObFailure::LoginRequired, Some(mut held)) => {
                let from = held.consent.state;
                held.consent.observe(ConsentSignal::LoginRequired, now);
                let outcome = self.outcome(turn, OpenBankingKind::LoginRequired, Some(&held));
                self.commit(turn, held, from, outcome, |_| {}).await
            }
            (ObFailure::ConnectionGone { code }, Some(mut held)) => {
                tracing::warn!(code, "the provider no longer holds the connection");
                let from = held.consent.state;
                held.consent.observe(ConsentSignal::Revoked, now);
                let outcome = self.outcome(turn, OpenBankingKind::Revoked, Some(&held));
                self.commit(turn, held, from, outcome, |row| row.access_token_enc = None).await
            }
            (ObFailure::InstitutionUnavailable { code, retry_after }, held) => {
                tracing::info!(code, "institution unavailable");
                let mut outcome = self.outcome(turn, OpenBankingKind::InstitutionUnavailable, held.as_ref());
                outcome.retry_after_ms = Some(i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX));
                Ok(outcome)
            }
            (failure, held) => {
                let error = match failure {
                    ObFailure::Call(e) => e.to_outcome_error(),
                    other => OutcomeError { class: ErrorClass::Transient, code: ErrorCode::VendorUnavailable, message: other.to_string() },
                };
                let mut outcome = self.outcome(turn, OpenBankingKind::Failed, held.as_ref());
                outcome.error = Some(error);
                Ok(outcome)
            }
        }
    }
}

fn new_row(consent_id: &str, provider: &str, institution_id: Option<String>) -> ConsentRow {
    ConsentRow {
        consent_id: consent_id.to_owned(),
        provider: provider.to_owned(),
        state: String::new(),
        consent: String::new(),
        // 0: not stored yet (commit inserts).
        version: 0,
        provider_reference: None,
        institution_id,
        access_token_enc: None,
        sync_cursor: None,
        page_seq: 0,
        known_accounts: String::new(),
        refresh_key: None,
        refresh_pages: 0,
        refresh_accounts_done: false,
        last_key: None,
        last_outcome: None,
    }
}

/// The consent's side of an outcome.
fn fill(outcome: &mut OpenBankingOutcome, held: Option<&Held>) {
    let Some(held) = held else { return };
    outcome.consent_state = Some(held.consent.state);
    outcome.provider = Some(held.row.provider.clone());
    outcome.provider_reference = held.row.provider_reference.clone();
    outcome.institution_id = held.row.institution_id.clone();
    outcome.consent_expires_at_ms = held.consent.expires_at_ms;
    if outcome.action == OpenBankingAction::Refresh {
        outcome.data_pages = 0;
    }
}
