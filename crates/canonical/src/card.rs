//! Cards: the commands core banking sends about a card, and the card's
//! lifecycle as one pure state machine shared by every processor.
//!
//! A card is named by our own `card_id` (the Kafka key of everything about
//! it). What identifies it at the processor (its token) and what a person
//! may see of the number (the last four digits) come back in outcomes; the
//! PAN never does, and a PIN only ever travels as a processor-encrypted
//! block or a hosted-flow token ([`PinSpec`]).
//!
//! The lifecycle ([`CardState`], [`CardLifecycle`]):
//!
//! ```text
//! ORDERED -> ISSUED -> ACTIVE                                    (virtual)
//! ORDERED -> ISSUED -> SHIPPED -> PENDING_ACTIVATION -> ACTIVE   (physical)
//! ACTIVE <-> SUSPENDED;  any issued state -> TERMINATED | EXPIRED (terminal)
//! ```
//!
//! Commands are judged *before* any vendor call ([`CardLifecycle::admit`]);
//! processor callbacks move the card through [`CardLifecycle::observe`],
//! which publishes one event per real state change: a duplicate, a late
//! callback for a state already passed, or one older than the last change
//! changes nothing, and a callback that skips ahead on the issuance path
//! fills in the states it skipped, in order.

use crate::card_event::CardEventKind;
use serde::{Deserialize, Serialize};

/// Longest card id: it is part of idempotency keys vendors cap at 64.
pub const MAX_CARD_ID_LEN: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardAction {
    Issue,
    Activate,
    SetPin,
    Suspend,
    Reinstate,
    Replace,
    Terminate,
    ProvisionToken,
    OpenDispute,
    SubmitDisputeEvidence,
}

impl CardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CardAction::Issue => "ISSUE",
            CardAction::Activate => "ACTIVATE",
            CardAction::SetPin => "SET_PIN",
            CardAction::Suspend => "SUSPEND",
            CardAction::Reinstate => "REINSTATE",
            CardAction::Replace => "REPLACE",
            CardAction::Terminate => "TERMINATE",
            CardAction::ProvisionToken => "PROVISION_TOKEN",
            CardAction::OpenDispute => "OPEN_DISPUTE",
            CardAction::SubmitDisputeEvidence => "SUBMIT_DISPUTE_EVIDENCE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardForm {
    Virtual,
    Physical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSpec {
    pub form: CardForm,
    /// Our card product (program); each adapter maps it to the processor's
    /// own product or card program token.
    pub product: String,
    /// Core banking's id for the cardholder (no personal data here).
    pub cardholder_ref: String,
    /// Required for a physical card.
    pub shipping: Option<ShippingAddress>,
}

/// A PIN, in one of the two forms that keep it out of our hands: an
/// ISO 9564 PIN block encrypted under the processor's key (built on the
/// cardholder's device), or the token of the processor's hosted PIN flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinSpec {
    pub encrypted_pin_block: Option<String>,
    pub hosted_flow_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplaceReason {
    Lost,
    Stolen,
    Damaged,
    Expiring,
}

impl ReplaceReason {
    /// Lost and stolen cards are closed at once; a damaged or expiring one
    /// keeps working until its replacement is activated.
    pub fn closes_old_card_now(self) -> bool {
        matches!(self, ReplaceReason::Lost | ReplaceReason::Stolen)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceSpec {
    pub reason: ReplaceReason,
    /// Our id for the new card (the old one is the command's `card_id`).
    pub new_card_id: String,
    pub shipping: Option<ShippingAddress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Wallet {
    ApplePay,
    GooglePay,
}

/// A push-provisioning request as the wallet hands it over; the blobs are
/// the wallet's own, passed through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionSpec {
    pub wallet: Wallet,
    /// Apple Pay: base64 leaf and sub-CA certificates, nonce and its signature.
    pub certificates: Vec<String>,
    pub nonce: Option<String>,
    pub nonce_signature: Option<String>,
    /// Google Pay: the wallet's stable hardware and account ids.
    pub device_id: Option<String>,
    pub wallet_account_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeSpec {
    /// Our id for the dispute; subject of its events.
    pub dispute_id: String,
    /// The processor's id of the disputed transaction.
    pub transaction_ref: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: crate::card_dispute::DisputeReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceSpec {
    pub dispute_id: String,
    /// Where the document is (our document store), never its content.
    pub document_ref: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardCommand {
    /// Our card id; the Kafka key of every message about the card.
    pub card_id: String,
    pub idempotency_key: String,
    pub action: CardAction,
    pub issue: Option<IssueSpec>,
    pub pin: Option<PinSpec>,
    pub replace: Option<ReplaceSpec>,
    pub provision: Option<ProvisionSpec>,
    pub dispute: Option<DisputeSpec>,
    pub evidence: Option<EvidenceSpec>,
    /// Why a card is suspended or terminated, in our words (audit only).
    pub reason: Option<String>,
    pub requested_at_ms: i64,
}

impl CardCommand {
    /// Shape checks that need no state; [`CardLifecycle::admit`] judges the
    /// command against the card.
    pub fn validate(&self) -> Result<(), String> {
        crate::check::validate_ids(&self.card_id, &self.idempotency_key)?;
        if self.card_id.len() > MAX_CARD_ID_LEN {
            return Err(format!("card_id must have at most {MAX_CARD_ID_LEN} characters"));
        }
        match self.action {
            CardAction::Issue => {
                let Some(issue) = &self.issue else { return Err("issue is required for ISSUE".into()) };
                if issue.product.trim().is_empty() || issue.cardholder_ref.trim().is_empty() {
                    return Err("issue.product and issue.cardholder_ref are required".into());
                }
                if issue.form == CardForm::Physical {
                    validate_shipping(issue.shipping.as_ref(), "issue.shipping")?;
                }
            }
            CardAction::SetPin => validate_pin(self.pin.as_ref())?,
            CardAction::Replace => {
                let Some(replace) = &self.replace else { return Err("replace is required for REPLACE".into()) };
                if replace.new_card_id == self.card_id {
                    return Err("replace.new_card_id must differ from card_id".into());
                }
                crate::check::validate_ids(&replace.new_card_id, &self.idempotency_key).map_err(|e| format!("replace.new_card_id: {e}"))?;
                if let Some(shipping) = &replace.shipping {
                    validate_shipping(Some(shipping), "replace.shipping")?;
                }
            }
            CardAction::ProvisionToken => {
                let Some(p) = &self.provision else { return Err("provision is required for PROVISION_TOKEN".into()) };
                match p.wallet {
                    Wallet::ApplePay if p.certificates.is_empty() || p.nonce.is_none() || p.nonce_signature.is_none() => {
                        return Err("Apple Pay provisioning needs certificates, nonce and nonce_signature".into())
                    }
                    Wallet::GooglePay if p.device_id.is_none() || p.wallet_account_id.is_none() => {
                        return Err("Google Pay provisioning needs device_id and wallet_account_id".into())
                    }
                    _ => {}
                }
            }
            CardAction::OpenDispute => {
                let Some(d) = &self.dispute else { return Err("dispute is required for OPEN_DISPUTE".into()) };
                if d.amount_minor <= 0 {
                    return Err("dispute.amount_minor must be positive".into());
                }
                crate::money::Currency::parse(&d.currency).map_err(|e| format!("dispute.currency: {e}"))?;
                if d.dispute_id.trim().is_empty() || d.transaction_ref.trim().is_empty() {
                    return Err("dispute.dispute_id and dispute.transaction_ref are required".into());
                }
            }
            CardAction::SubmitDisputeEvidence => match &self.evidence {
                Some(e) if !e.dispute_id.trim().is_empty() && !e.document_ref.trim().is_empty() => {}
                _ => return Err("evidence with dispute_id and document_ref is required for SUBMIT_DISPUTE_EVIDENCE".into()),
            },
            CardAction::Activate | CardAction::Suspend | CardAction::Reinstate | CardAction::Terminate => {}
        }
        Ok(())
    }
}

fn validate_shipping(shipping: Option<&ShippingAddress>, field: &str) -> Result<(), String> {
    let Some(s) = shipping else { return Err(format!("{field} is required for a physical card")) };
    if s.name.trim().is_empty() || s.line1.trim().is_empty() || s.city.trim().is_empty() || s.postal_code.trim().is_empty() {
        return Err(format!("{field} needs name, line1, city and postal_code"));
    }
    if s.country.len() != 2 || !s.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("{field}.country must be ISO 3166-1 alpha-2"));
    }
    Ok(())
}

/// Exactly one form, and nothing that could be a PIN in clear: a clear PIN
/// is 4 to 12 digits, an encrypted ISO 9564 block is 16 hex digits or more.
fn validate_pin(pin: Option<&PinSpec>) -> Result<(), String> {
    let Some(pin) = pin else { return Err("pin is required for SET_PIN".into()) };
    match (&pin.encrypted_pin_block, &pin.hosted_flow_token) {
        (Some(block), None) => {
            if block.len() < 16 || !block.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("pin.encrypted_pin_block must be an encrypted PIN block (at least 16 hex digits), never a PIN".into());
            }
        }
        (None, Some(token)) => {
            if token.len() <= 12 && token.bytes().all(|b| b.is_ascii_digit()) {
                return Err("pin.hosted_flow_token looks like a PIN; send the hosted flow's token".into());
            }
        }
        _ => return Err("pin needs exactly one of encrypted_pin_block and hosted_flow_token".into()),
    }
    Ok(())
}

/// Where a card is in its life, in our vocabulary; each adapter maps its
/// processor's states onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CardState {
    Ordered,
    Issued,
    Shipped,
    PendingActivation,
    Active,
    Suspended,
    Terminated,
    Expired,
}

impl CardState {
    pub const ALL: [CardState; 8] = [
        CardState::Ordered,
        CardState::Issued,
        CardState::Shipped,
        CardState::PendingActivation,
        CardState::Active,
        CardState::Suspended,
        CardState::Terminated,
        CardState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Ordered => "ORDERED",
            CardState::Issued => "ISSUED",
            CardState::Shipped => "SHIPPED",
            CardState::PendingActivation => "PENDING_ACTIVATION",
            CardState::Active => "ACTIVE",
            CardState::Suspended => "SUSPENDED",
            CardState::Terminated => "TERMINATED",
            CardState::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn terminal(self) -> bool {
        matches!(self, CardState::Terminated | CardState::Expired)
    }

    /// Position on the issuance path; ACTIVE and SUSPENDED share one, the
    /// terminal states come last. A callback for a lower rank is late.
    fn rank(self) -> u8 {
        match self {
            CardState::Ordered => 0,
            CardState::Issued => 1,
            CardState::Shipped => 2,
            CardState::PendingActivation => 3,
            CardState::Active | CardState::Suspended => 4,
            CardState::Terminated | CardState::Expired => 5,
        }
    }
}

/// Why a command was refused before any vendor call: the outcome's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardRefusal {
    /// ISSUE for a card id that already exists (under another key).
    CardExists,
    /// Any command but ISSUE for a card we never issued.
    CardNotFound,
    /// The command is not allowed in the card's state.
    IllegalTransition,
}

impl CardRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            CardRefusal::CardExists => "card_exists",
            CardRefusal::CardNotFound => "card_not_found",
            CardRefusal::IllegalTransition => "illegal_transition",
        }
    }
}

/// A refused command: the code and a sentence for the person reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: CardRefusal,
    pub message: String,
}

/// One card's state and what links it to others; stored with the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardLifecycle {
    pub state: CardState,
    pub form: CardForm,
    /// The card this one replaces, and the one that replaced it.
    pub replaces: Option<String>,
    pub replaced_by: Option<String>,
    /// When the last applied change happened at the processor (its clock):
    /// a callback older than this is stale.
    pub changed_at_ms: i64,
    /// When the processor said the card's shipment came back (its clock):
    /// CARD_SHIPPING_RETURNED is published once per card, however often and
    /// under whatever ids the processor says it. Absent in rows stored before.
    #[serde(default)]
    pub shipping_returned_at_ms: Option<i64>,
    /// The processor's ids of wallet tokens held back for step-up
    /// (Marqeta's DECISION_YELLOW): each one's later activation is news, told
    /// once as TOKEN_PROVISIONED; a token approved at once was told with its
    /// decision, so its activation is not. Absent in rows stored before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wallet_tokens_awaiting_step_up: Vec<String>,
}

/// A processor's word on one wallet token of the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletTokenWord {
    /// Every party approved: the token is in the wallet.
    Approved,
    /// A party wants the cardholder verified further first (step-up).
    StepUpRequired,
    /// The token went active (after a step-up, or after its approval).
    Activated,
}

/// What a processor callback did to the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The states entered, in order (more than one when the callback skipped
    /// ahead on the issuance path): one event each.
    Entered(Vec<CardState>),
    /// Nothing changed: a duplicate, a late callback or a stale one.
    Unchanged,
    /// The processor claims a move our lifecycle forbids (a terminated card
    /// active again): no event; the reconciler and ops are told.
    Contradiction { from: CardState, to: CardState },
}

impl CardLifecycle {
    /// A card just ordered (an ISSUE command admitted).
    pub fn ordered(form: CardForm, replaces: Option<String>, at_ms: i64) -> Self {
        Self {
            state: CardState::Ordered,
            form,
            replaces,
            replaced_by: None,
            changed_at_ms: at_ms,
            shipping_returned_at_ms: None,
            wallet_tokens_awaiting_step_up: Vec::new(),
        }
    }

    /// What the processor's word on wallet token `token` tells the
    /// cardholder, if anything: a step-up request once per token, and a
    /// provisioned token once, at its approval or at its activation after
    /// a step-up. `token` is `None` in callbacks stored before tokens were
    /// carried: their activation cannot be matched and is not told.
    pub fn wallet_token(&mut self, token: Option<&str>, word: WalletTokenWord) -> Option<crate::card_event::CardEventKind> {
        use crate::card_event::CardEventKind as K;
        let awaiting = token.and_then(|t| self.wallet_tokens_awaiting_step_up.iter().position(|w| w == t));
        match word {
            WalletTokenWord::StepUpRequired => {
                if awaiting.is_some() {
                    return None;
                }
                if let Some(t) = token {
                    self.wallet_tokens_awaiting_step_up.push(t.to_owned());
                }
                Some(K::TokenStepUpRequired)
            }
            WalletTokenWord::Approved => {
                if let Some(i) = awaiting {
                    self.wallet_tokens_awaiting_step_up.remove(i);
                }
                Some(K::TokenProvisioned)
            }
            WalletTokenWord::Activated => {
                let i = awaiting?;
                self.wallet_tokens_awaiting_step_up.remove(i);
                Some(K::TokenProvisioned)
            }
        }
    }

    /// Judges a command against the card (None: we hold no such card)
    /// before any vendor is called.
    pub fn admit(card: Option<&CardLifecycle>, action: CardAction) -> Result<(), Refused> {
        let Some(card) = card else {
            return match action {
                CardAction::Issue => Ok(()),
                other => Err(Refused { code: CardRefusal::CardNotFound, message: format!("{} for a card that was never issued", other.as_str()) }),
            };
        };
        use CardState as S;
        let allowed = match action {
            CardAction::Issue => {
                return Err(Refused { code: CardRefusal::CardExists, message: format!("the card already exists ({})", card.state.as_str()) })
            }
            CardAction::Activate => match card.form {
                CardForm::Physical => matches!(card.state, S::Issued | S::Shipped | S::PendingActivation),
                CardForm::Virtual => card.state == S::Issued,
            },
            CardAction::SetPin => matches!(card.state, S::Issued | S::Shipped | S::PendingActivation | S::Active | S::Suspended),
            CardAction::Suspend => card.state == S::Active,
            CardAction::Reinstate => card.state == S::Suspended,
            CardAction::Replace => card.replaced_by.is_none() && matches!(card.state, S::Shipped | S::PendingActivation | S::Active | S::Suspended),
            CardAction::Terminate => !card.state.terminal(),
            CardAction::ProvisionToken => card.state == S::Active,
            // Disputes outlive the card: a closed card's charges are disputed too.
            CardAction::OpenDispute | CardAction::SubmitDisputeEvidence => card.state != S::Ordered,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused {
                code: CardRefusal::IllegalTransition,
                message: format!("{} is not allowed for a {} card", action.as_str(), card.state.as_str()),
            })
        }
    }

    /// The state a successful vendor call leaves the card in (the processor
    /// confirming synchronously), or None when the action moves nothing.
    pub fn after_success(&self, action: CardAction, reason: Option<ReplaceReason>) -> Option<CardState> {
        match action {
            CardAction::Issue => Some(CardState::Issued),
            CardAction::Activate => Some(CardState::Active),
            CardAction::Suspend => Some(CardState::Suspended),
            CardAction::Reinstate => Some(CardState::Active),
            CardAction::Terminate => Some(CardState::Terminated),
            CardAction::Replace if reason.is_some_and(ReplaceReason::closes_old_card_now) => Some(CardState::Terminated),
            CardAction::Replace | CardAction::SetPin | CardAction::ProvisionToken | CardAction::OpenDispute | CardAction::SubmitDisputeEvidence => None,
        }
    }

    /// Applies a processor's word (a callback, or our own call's answer) that
    /// the card is now `to`, as of `at_ms` on the processor's clock.
    pub fn observe(&mut self, to: CardState, at_ms: i64) -> Observed {
        let from = self.state;
        if to == from {
            return Observed::Unchanged;
        }
        if from.terminal() {
            return Observed::Contradiction { from, to };
        }
        // ACTIVE <-> SUSPENDED can flip back and forth: only time orders them.
        let lateral = to.rank() == from.rank();
        if lateral {
            if at_ms < self.changed_at_ms {
                return Observed::Unchanged;
            }
            self.enter(to, at_ms);
            return Observed::Entered(vec![to]);
        }
        if to.rank() < from.rank() {
            return Observed::Unchanged;
        }
        let path = self.path();
        if !to.terminal() && to != CardState::Suspended && !path.contains(&to) {
            // A virtual card "shipped": the processor and we disagree on the card.
            return Observed::Contradiction { from, to };
        }
        let mut entered: Vec<CardState> = path.into_iter().filter(|s| s.rank() > from.rank() && s.rank() < to.rank()).collect();
        entered.push(to);
        self.enter(to, at_ms.max(self.changed_at_ms));
        Observed::Entered(entered)
    }

    /// The issuance path for this card's form, up to ACTIVE.
    fn path(&self) -> Vec<CardState> {
        match self.form {
            CardForm::Virtual => vec![CardState::Ordered, CardState::Issued, CardState::Active],
            CardForm::Physical => vec![CardState::Ordered, CardState::Issued, CardState::Shipped, CardState::PendingActivation, CardState::Active],
        }
    }

    fn enter(&mut self, to: CardState, at_ms: i64) {
        self.state = to;
        self.changed_at_ms = at_ms;
    }
}

/// The event a state entered publishes.
pub fn event_for(state: CardState, from: CardState) -> Option<CardEventKind> {
    Some(match state {
        CardState::Ordered => return None,
        CardState::Issued => CardEventKind::CardIssued,
        CardState::Shipped => CardEventKind::CardShipped,
        CardState::PendingActivation => CardEventKind::CardPendingActivation,
        CardState::Active if from == CardState::Suspended => CardEventKind::CardReinstated,
        CardState::Active => CardEventKind::CardActivated,
        CardState::Suspended => CardEventKind::CardSuspended,
        CardState::Terminated => CardEventKind::CardTerminated,
        CardState::Expired => CardEventKind::CardExpired,
    })
}

#[cfg(test)]
#[path = "card_tests.rs"]
mod tests;
