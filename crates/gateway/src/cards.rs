//! `/v1/cards`: a card issued, and moved through its lifecycle, as the
//! canonical [`CardCommand`] on `cards.commands.v1`; its state from
//! `cards.outcomes.v1`.
//!
//! A card's view carries what a person may see of it: our id, its state and
//! the last four digits. Never the PAN (no outcome has it) and never the
//! processor's token for the card (`processor_reference`): product code
//! names a card by our id only. PINs, wallet provisioning and disputes are
//! not offered here.

use crate::auth::Team;
use crate::payouts::{refuses_another_command, ViewError};
use crate::problem::{GetProblems, PostProblems, Problem};
use crate::projection::{json, Projected, Projects};
use crate::resource::{self, Answer, Prepared, QueryMap, ACCEPTED};
use crate::Gateway;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use switchyard_bus::Outbound;
use switchyard_canonical::card::{CardAction, CardCommand, CardForm, CardState, IssueSpec, ShippingAddress};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};

/// The card worker's domain: claims on both sides meet under it.
pub const DOMAIN: &str = "cards";

/// `POST /v1/cards` body: a card to issue.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCardRequest {
    pub form: CardFormRequest,
    /// Our card product (program), as the partner catalog names it.
    #[schema(min_length = 1)]
    pub product: String,
    /// Core banking's id for the cardholder; no personal data.
    #[schema(min_length = 1)]
    pub cardholder_ref: String,
    /// Required for a physical card, refused for a virtual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<ShippingRequest>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardFormRequest {
    Virtual,
    Physical,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingRequest {
    #[schema(min_length = 1)]
    pub name: String,
    #[schema(min_length = 1)]
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[schema(min_length = 1)]
    pub city: String,
    #[schema(min_length = 1)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 (e.g. `GB`).
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

/// `POST /v1/cards/{id}/transitions` body: a move of the card's lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub action: TransitionAction,
    /// Why, in your words, for the audit (suspend and terminate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `activate` an issued card, `suspend` an active one, `reinstate` a
/// suspended one, `terminate` any card for good.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionAction {
    Activate,
    Suspend,
    Reinstate,
    Terminate,
}

/// The card id a key stands for: `card_` and 24 hex digits of a digest
/// (within the 48 characters a card id may have).
pub fn card_id(idempotency_key: &str) -> String {
    resource::derived_id("card", DOMAIN, idempotency_key)
}

fn command(card_id: String, idempotency_key: &str, action: CardAction) -> CardCommand {
    CardCommand {
        card_id,
        idempotency_key: idempotency_key.to_owned(),
        action,
        issue: None,
        pin: None,
        replace: None,
        provision: None,
        dispute: None,
        evidence: None,
        reason: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

impl IssueCardRequest {
    /// The ISSUE command, validated by the same rules the worker applies.
    pub fn to_command(&self, idempotency_key: &str) -> Result<CardCommand, String> {
        if self.form == CardFormRequest::Virtual && self.shipping.is_some() {
            return Err("shipping is only for a physical card".into());
        }
        let mut c = command(card_id(idempotency_key), idempotency_key, CardAction::Issue);
        c.issue = Some(IssueSpec {
            form: match self.form {
                CardFormRequest::Virtual => CardForm::Virtual,
                CardFormRequest::Physical => CardForm::Physical,
            },
            product: self.product.clone(),
            cardholder_ref: self.cardholder_ref.clone(),
            shipping: self.shipping.as_ref().map(|s| ShippingAddress {
                name: s.name.clone(),
                line1: s.line1.clone(),
                line2: s.line2.clone(),
                city: s.city.clone(),
                postal_code: s.postal_code.clone(),
                country: s.country.clone(),
            }),
        });
        c.validate()?;
        Ok(c)
    }
}

impl TransitionRequest {
    pub fn to_command(&self, card_id: &str, idempotency_key: &str) -> Result<CardCommand, String> {
        let action = match self.action {
            TransitionAction::Activate => CardAction::Activate,
            TransitionAction::Suspend => CardAction::Suspend,
            TransitionAction::Reinstate => CardAction::Reinstate,
            TransitionAction::Terminate => CardAction::Terminate,
        };
        let mut c = command(card_id.to_owned(), idempotency_key, action);
        c.reason = self.reason.clone();
        c.validate()?;
        Ok(c)
    }
}

/// The last command the card answered (or the one just accepted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CardCommandView {
    /// `issue`, `activate`, `suspend`, `reinstate`, `terminate`, ...
    pub action: String,
    /// `accepted`, then `succeeded`, `failed` or `rejected`.
    pub status: String,
    /// Why a rejected command was refused by the card's lifecycle:
    /// `card_exists`, `card_not_found`, `illegal_transition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// Where a card stands, as `GET` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CardView {
    pub id: String,
    /// `accepted` (queued, no outcome yet), then the card's state:
    /// `ordered`, `issued`, `shipped`, `pending_activation`, `active`,
    /// `suspended`, `terminated` or `expired`; `failed` or `rejected` when
    /// it was never issued.
    pub status: String,
    /// Whether the card is over (terminated, expired, or never issued).
    pub terminal: bool,
    /// The last four digits of the number, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_four: Option<String>,
    /// The processor holding the card, by our catalog name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub last_command: CardCommandView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ViewError>,
    /// When the state shown was reached (ms since the epoch).
    pub updated_at_ms: i64,
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl CardView {
    fn accepted(command: &CardCommand) -> Self {
        Self {
            id: command.card_id.clone(),
            status: ACCEPTED.into(),
            terminal: false,
            last_four: None,
            provider: None,
            last_command: CardCommandView { action: lower(command.action.as_str()), status: ACCEPTED.into(), refusal: None },
            error: None,
            updated_at_ms: command.requested_at_ms,
        }
    }

    /// `None` for an outcome about no card of ours (a command for a card
    /// never issued has no state to show).
    pub fn of_outcome(outcome: &CardOutcome) -> Option<Self> {
        let status = match (outcome.state, outcome.action) {
            (Some(state), _) => lower(state.as_str()),
            (None, CardAction::Issue) => outcome.status.as_str().to_owned(),
            (None, _) => return None,
        };
        Some(Self {
            id: outcome.card_id.clone(),
            terminal: outcome.state.map_or(outcome.status != CardOutcomeStatus::Succeeded, CardState::terminal),
            status,
            last_four: outcome.last_four.clone(),
            provider: outcome.provider.clone(),
            last_command: CardCommandView {
                action: lower(outcome.action.as_str()),
                status: outcome.status.as_str().to_owned(),
                refusal: outcome.refusal.map(|r| r.as_str().to_owned()),
            },
            error: outcome.error.as_ref().map(ViewError::of),
            updated_at_ms: outcome.completed_at_ms,
        })
    }
}

/// `GET /v1/cards?status=` answer (documented; the handler writes the
/// stored views as they are).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CardList {
    pub items: Vec<CardView>,
}

/// Statuses `GET /v1/cards?status=` accepts.
pub const LISTABLE_STATUSES: &[&str] =
    &["accepted", "ordered", "issued", "shipped", "pending_activation", "active", "suspended", "terminated", "expired", "failed", "rejected"];

/// `cards.outcomes.v1` to each card's view.
pub(crate) struct CardOutcomes;

impl Projects for CardOutcomes {
    type Message = CardOutcome;
    const DOMAIN: &'static str = DOMAIN;

    fn project(outcome: &CardOutcome) -> Option<Projected> {
        if refuses_another_command(outcome.status == CardOutcomeStatus::Rejected, outcome.error.as_ref()) {
            return None;
        }
        let view = CardView::of_outcome(outcome)?;
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: outcome.completed_at_ms })
    }
}

/// `cards.events.v1` over each card's view: a change the processor made on
/// its own (a card closed for fraud, expired, reinstated by the issuer's
/// staff) has no outcome of ours, only this event. It moves the state, the
/// last four and the processor; the last command stays what the outcomes
/// said. A change our command made is told twice (outcome and event): the
/// event of a state the view already shows writes nothing, and otherwise
/// the newer observation wins. Dispute and wallet-token events are
/// about something else than the card's state and change nothing here.
pub(crate) struct CardEvents;

impl Projects for CardEvents {
    type Message = CardEvent;
    const DOMAIN: &'static str = DOMAIN;

    fn project(_event: &CardEvent) -> Option<Projected> {
        None
    }

    fn amends(event: &CardEvent) -> Option<String> {
        (event.dispute_id.is_none() && event.to_state.as_deref().and_then(CardState::parse).is_some()).then(|| event.card_id.clone())
    }

    fn project_onto(event: &CardEvent, previous: &str) -> Option<Projected> {
        let state = event.to_state.as_deref().and_then(CardState::parse)?;
        let mut view: CardView = serde_json::from_str(previous).ok()?;
        // A change the view already shows (our command's, told first by its
        // outcome) is not written again: a new version with nothing new
        // would wake every long poll on the card for nothing.
        let last_four = event.last_four.clone().or_else(|| view.last_four.clone());
        if view.status == lower(state.as_str()) && view.last_four == last_four {
            return None;
        }
        // A command of ours in flight: its outcome tells the change with
        // the command's result; the event alone would show the new state
        // beside an `accepted` command.
        if view.last_command.status == ACCEPTED {
            return None;
        }
        view.status = lower(state.as_str());
        view.terminal = state.terminal();
        view.last_four = last_four;
        view.provider = Some(event.processor.clone());
        view.updated_at_ms = event.occurred_at_ms;
        Some(Projected { resource_id: view.id.clone(), status: view.status.clone(), body: json(&view), observed_at_ms: event.occurred_at_ms })
    }
}

fn prepared(app: &Gateway, digest: String, command: &CardCommand, answer: Answer) -> Result<Prepared, Problem> {
    Ok(Prepared {
        domain: DOMAIN,
        resource_id: command.card_id.clone(),
        location: format!("/v1/cards/{}", command.card_id),
        digest,
        record: Outbound {
            topic: app.config.topics.card_commands.clone(),
            // Everything about a card is keyed by its id, so it stays in order.
            key: Some(command.card_id.clone().into_bytes()),
            payload: resource::encode(&app.encoders.cards, command, "card")?,
            headers: Vec::new(),
        },
        schema_id: app.encoders.cards.schema_id(),
        answer,
    })
}

fn issue(app: &Gateway, team: &Team, key: &str, body: &[u8]) -> Result<Prepared, Problem> {
    let request: IssueCardRequest = resource::parse(body)?;
    let command = request.to_command(key).map_err(Problem::invalid)?;
    let view = CardView::accepted(&command);
    prepared(app, resource::digest(&team.name, "", &request), &command, Answer::Created { status: ACCEPTED, body: json(&view) })
}

/// A transition of a card we hold a view of; its current view is the answer.
async fn transition(app: &Gateway, team: &Team, id: &str, key: String, body: Bytes) -> Result<Prepared, Problem> {
    let request: TransitionRequest = resource::parse(&body)?;
    // PostgreSQL text cannot hold NUL: no card has such an id.
    if id.contains('\0') {
        return Err(Problem::not_found("card"));
    }
    let current = match app.store.resource(DOMAIN, id).await {
        Ok(Some(state)) => state.body,
        Ok(None) => return Err(Problem::not_found("card")),
        Err(e) => {
            tracing::warn!(error = %e, "card not read");
            return Err(Problem::store_unavailable());
        }
    };
    let command = request.to_command(id, &key).map_err(Problem::invalid)?;
    prepared(app, resource::digest(&team.name, id, &request), &command, Answer::Current { body: current })
}

/// Issue a card. Answered 202 once the command is on the bus; follow
/// `Location` for its state (`issued`, with the last four digits).
#[utoipa::path(
    post, path = "/v1/cards", tag = "cards", operation_id = "issueCard",
    security(("api_key" = ["cards:write"])),
    request_body = IssueCardRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = CardView,
            headers(("Location" = String, description = "The card's URL")),
            links(("GetCard" = (operation_id = "getCard", parameters(("id" = "$response.body#/id")), description = "The card's state")))),
        (status = 403, description = "The team lacks cards:write", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_card(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| {
        let prepared = issue(&app, &team, &key, &body);
        async move { prepared }
    })
    .await
}

/// Activate, suspend, reinstate or terminate a card. Answered 202 with the
/// card's current state once the command is on the bus; the card's
/// `last_command` then says whether it was done (an action the card's state
/// does not allow is `rejected` with `illegal_transition`, no processor called).
#[utoipa::path(
    post, path = "/v1/cards/{id}/transitions", tag = "cards", operation_id = "transitionCard",
    security(("api_key" = ["cards:write"])),
    request_body = TransitionRequest,
    params(
        ("id" = String, Path, description = "The card's id"),
        ("Idempotency-Key" = String, Header, description = "Required; 1 to 64 printable ASCII. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = CardView,
            headers(("Location" = String, description = "The card's URL")),
            links(("GetCard" = (operation_id = "getCard", parameters(("id" = "$request.path.id")), description = "The card's state")))),
        (status = 403, description = "The team lacks cards:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such card", body = Problem, content_type = "application/problem+json"),
        PostProblems,
    )
)]
pub(crate) async fn post_transition(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    resource::submit(&app, &team, &headers, body, |key, body| transition(&app, &team, &id, key, body)).await
}

/// A card's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/cards/{id}", tag = "cards", operation_id = "getCard",
    security(("api_key" = ["cards:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The card", body = CardView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks cards:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such card", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn get_card(State(app): State<Arc<Gateway>>, Path(id): Path<String>, query: QueryMap, headers: HeaderMap) -> Response {
    resource::current(&app, DOMAIN, "card", &id, query, &headers).await
}

/// Cards in one status, oldest change first.
#[utoipa::path(
    get, path = "/v1/cards", tag = "cards", operation_id = "listCards",
    security(("api_key" = ["cards:read"])),
    params(
        ("status" = String, Query, description = "One of accepted, ordered, issued, shipped, pending_activation, active, suspended, terminated, expired, failed, rejected"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The cards", body = CardList),
        (status = 400, description = "Missing or unknown status, or limit out of range", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks cards:read", body = Problem, content_type = "application/problem+json"),
        GetProblems,
    )
)]
pub(crate) async fn list_cards(State(app): State<Arc<Gateway>>, query: QueryMap) -> Response {
    resource::list(&app, DOMAIN, LISTABLE_STATUSES, query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::card::CardRefusal;

    fn request() -> IssueCardRequest {
        serde_json::from_str(r#"{"form":"virtual","product":"debit-classic","cardholder_ref":"cust-1"}"#).expect("parses")
    }

    #[test]
    fn an_issue_request_becomes_the_canonical_command_and_bad_ones_are_refused() {
        let command = request().to_command("key-1").expect("valid");
        assert_eq!((command.card_id.as_str(), command.action), (card_id("key-1").as_str(), CardAction::Issue));
        assert!(command.card_id.len() <= switchyard_canonical::card::MAX_CARD_ID_LEN);
        let mut physical = request();
        physical.form = CardFormRequest::Physical;
        assert!(physical.to_command("k").is_err_and(|e| e.contains("shipping")), "a physical card needs an address");
        let mut virtual_shipped = request();
        virtual_shipped.shipping = Some(ShippingRequest {
            name: "A".into(),
            line1: "1 St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1".into(),
            country: "gb".into(),
        });
        assert!(virtual_shipped.to_command("k").is_err_and(|e| e.contains("only for a physical card")));
        let t: TransitionRequest = serde_json::from_str(r#"{"action":"reinstate"}"#).expect("parses");
        assert_eq!(t.to_command("card_1", "k").expect("valid").action, CardAction::Reinstate);
    }

    #[test]
    fn outcomes_become_views_without_the_processor_token_and_collisions_are_not_projected() {
        let command = request().to_command("key-1").expect("valid");
        let mut outcome = CardOutcome::new(&command, CardOutcomeStatus::Succeeded);
        outcome.state = Some(CardState::Issued);
        outcome.processor_reference = Some("tok-ab12cd34".into());
        outcome.last_four = Some("4242".into());
        outcome.provider = Some("lithic".into());
        let projected = CardOutcomes::project(&outcome).expect("projected");
        assert_eq!((projected.resource_id.as_str(), projected.status.as_str()), (card_id("key-1").as_str(), "issued"));
        assert!(projected.body.contains("\"last_four\":\"4242\"") && !projected.body.contains("tok-ab12cd34"), "{}", projected.body);

        let mut refused = CardOutcome::new(&command, CardOutcomeStatus::Rejected);
        refused.state = Some(CardState::Issued);
        refused.refusal = Some(CardRefusal::IllegalTransition);
        let view = CardView::of_outcome(&refused).expect("a view");
        assert_eq!((view.status.as_str(), view.last_command.refusal.as_deref()), ("issued", Some("illegal_transition")));

        use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
        let collision = CardOutcome::rejected(&command, None, OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::IdempotencyCollision, message: "another command".into() });
        assert!(CardOutcomes::project(&collision).is_none());
        let ghost = CardOutcome::rejected(&TransitionRequest { action: TransitionAction::Activate, reason: None }.to_command("ghost", "k").expect("valid"), Some(CardRefusal::CardNotFound), OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: "no card".into() });
        assert!(CardOutcomes::project(&ghost).is_none(), "no card, no view");
    }

    #[test]
    fn a_processors_own_change_moves_the_view_and_keeps_its_last_command() {
        use switchyard_canonical::card_event::CardEventKind;
        let command = request().to_command("key-2").expect("valid");
        let mut outcome = CardOutcome::new(&command, CardOutcomeStatus::Succeeded);
        outcome.state = Some(CardState::Active);
        outcome.last_four = Some("4242".into());
        outcome.provider = Some("lithic".into());
        let stored = CardOutcomes::project(&outcome).expect("projected");
        let closed = CardEvent {
            event_id: format!("{}:7", command.card_id),
            card_id: command.card_id.clone(),
            kind: CardEventKind::CardTerminated,
            from_state: Some("ACTIVE".into()),
            to_state: Some("TERMINATED".into()),
            processor: "lithic".into(),
            processor_reference: Some("tok-ab12cd34".into()),
            last_four: None,
            dispute_id: None,
            amount_minor: None,
            currency: None,
            linked_card_id: None,
            notify_cardholder: true,
            occurred_at_ms: outcome.completed_at_ms + 1_000,
            published_at_ms: outcome.completed_at_ms + 1_001,
        };
        assert_eq!(CardEvents::amends(&closed).as_deref(), Some(command.card_id.as_str()));
        let moved = CardEvents::project_onto(&closed, &stored.body).expect("projected");
        let view: CardView = serde_json::from_str(&moved.body).expect("a view");
        assert_eq!((view.status.as_str(), view.terminal, view.last_four.as_deref()), ("terminated", true, Some("4242")));
        assert_eq!((view.last_command.action.as_str(), moved.observed_at_ms), ("issue", closed.occurred_at_ms), "the last command is the outcomes'");
        assert!(!moved.body.contains("tok-ab12cd34"), "never the processor's token: {}", moved.body);
        let activated = CardEvent { kind: CardEventKind::CardActivated, to_state: Some("ACTIVE".into()), ..closed.clone() };
        assert!(CardEvents::project_onto(&activated, &stored.body).is_none(), "a change the view already shows is not written again");
        let in_flight = json(&CardView { last_command: CardCommandView { action: "suspend".into(), status: ACCEPTED.into(), refusal: None }, ..serde_json::from_str(&stored.body).expect("a view") });
        assert!(CardEvents::project_onto(&closed, &in_flight).is_none(), "a command in flight is told by its outcome");
        let dispute = CardEvent { kind: CardEventKind::DisputeUpdated, dispute_id: Some("dp-1".into()), to_state: Some("SUBMITTED".into()), ..closed.clone() };
        assert!(CardEvents::amends(&dispute).is_none(), "a dispute's states are not the card's");
    }
}
