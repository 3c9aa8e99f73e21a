//! Avro values of serde types, framed the Confluent way. The encoder writes
//! with our registered schema; the decoder reads any registered writer schema
//! into our reader schema through Avro schema resolution, so producers may
//! evolve compatibly without breaking consumers.

use crate::registry::{LookupError, RegistryClient};
use crate::wire::{self, FrameError};
use crate::BusError;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Encodes values with one schema registered under one subject.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    schema: Arc<Schema>,
    schema_id: u32,
}

impl AvroEncoder {
    /// Registers `schema_json` under `<topic>-value` and encodes with it.
    pub async fn register(registry: &RegistryClient, topic: &str, schema_json: &str) -> Result<Self, BusError> {
        let schema = Schema::parse_str(schema_json).map_err(|e| BusError::Avro(format!("schema for {topic}: {e}")))?;
        let schema_id = registry.register(&format!("{topic}-value"), schema_json).await?;
        Ok(Self { schema: Arc::new(schema), schema_id })
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Writes a unit variant (an Avro enum symbol) as its *position in the
    /// Rust enum*: apache-avro's schema-guided serializer does not look the
    /// symbol up by name. That is right only while every Rust enum lists its
    /// variants in its schema's symbol order, which
    /// `codec_enum_tests` checks for every enum of every schema. Writing by
    /// name (a value tree resolved against the schema) was tried and left
    /// out for now: with it the payouts thousand-command e2e test lost an
    /// outcome twice, and not without it, and the cause is not known yet.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, BusError> {
        let mut out = Vec::with_capacity(256);
        out.push(wire::MAGIC_BYTE);
        out.extend_from_slice(&self.schema_id.to_be_bytes());
        // Serializes straight into Avro binary, guided by the schema: no
        // intermediate value tree on the hot path.
        apache_avro::write_avro_datum_ref(&self.schema, value, &mut out).map_err(|e| BusError::Avro(e.to_string()))?;
        Ok(out)
    }
}

/// Why bytes could not be decoded. Everything but `RegistryUnavailable` is a
/// property of the message and sends it to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("avro datum does not match writer schema {schema_id}: {message}")]
    BadDatum { schema_id: u32, message: String },
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
}

impl DecodeError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

#[derive(Debug, Clone)]
pub struct AvroDecoder {
    registry: Arc<RegistryClient>,
    reader: Arc<Schema>,
    reader_form: String,
    /// Per writer id: whether it equals the reader schema, in which case
    /// schema resolution (costly in apache-avro) is skipped.
    same_as_reader: Arc<std::sync::RwLock<std::collections::HashMap<u32, bool>>>,
}

impl AvroDecoder {
    pub fn new(registry: Arc<RegistryClient>, reader_schema_json: &str) -> Result<Self, BusError> {
        let reader = Schema::parse_str(reader_schema_json).map_err(|e| BusError::Avro(format!("reader schema: {e}")))?;
        let reader_form = reader.canonical_form();
        Ok(Self { registry, reader: Arc::new(reader), reader_form, same_as_reader: Arc::default() })
    }

    fn needs_resolution(&self, schema_id: u32, writer: &Schema) -> bool {
        let known = self.same_as_reader.read().unwrap_or_else(|e| e.into_inner()).get(&schema_id).copied();
        let same = known.unwrap_or_else(|| {
            let same = writer.canonical_form() == self.reader_form;
            self.same_as_reader.write().unwrap_or_else(|e| e.into_inner()).insert(schema_id, same);
            same
        });
        !same
    }

    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        // A `decode` span inside a traced hop; Span::none() otherwise.
        tracing::Instrument::instrument(self.decode_untraced(bytes), crate::telemetry::child_span("decode")).await
    }

    async fn decode_untraced<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (schema_id, mut datum) = wire::unframe(bytes)?;
        let writer = self.registry.schema_by_id(schema_id).await.map_err(|e| match e {
            LookupError::UnknownId(id) => DecodeError::UnknownSchemaId(id),
            LookupError::Unavailable(e) => DecodeError::RegistryUnavailable(e.to_string()),
        })?;
        let bad = |message: String| DecodeError::BadDatum { schema_id, message };
        let reader = self.needs_resolution(schema_id, &writer).then_some(self.reader.as_ref());
        let value = apache_avro::from_avro_datum(&writer, &mut datum, reader).map_err(|e| bad(e.to_string()))?;
        if !datum.is_empty() {
            return Err(bad(format!("{} trailing bytes after the datum", datum.len())));
        }
        apache_avro::from_value(&value).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError, PayoutOutcome, PayoutStatus};

    const OUTCOME: &str = include_str!("../../../schemas/payouts/PayoutOutcome.v1.avsc");

    fn outcome(error: bool) -> PayoutOutcome {
        PayoutOutcome {
            payout_id: "po-1".into(),
            idempotency_key: "k".into(),
            status: PayoutStatus::PendingUnknown,
            amount_minor: 1234,
            currency: "EUR".into(),
            provider: error.then(|| "stripe".into()),
            provider_reference: None,
            error: error.then(|| OutcomeError { class: ErrorClass::Transient, code: ErrorCode::Timeout, message: "m".into() }),
            attempts: 3,
            replayed: true,
            completed_at_ms: 1_700_000_000_000,
        }
    }

    /// The direct serializer must produce exactly what the generic,
    /// value-based encoder produces, and decode back to the same value.
    #[test]
    fn direct_encoding_matches_the_generic_encoder_and_round_trips() {
        let schema = Schema::parse_str(OUTCOME).expect("schema");
        let encoder = AvroEncoder { schema: Arc::new(schema.clone()), schema_id: 7 };
        for o in [outcome(true), outcome(false)] {
            let framed = encoder.encode(&o).expect("encodes");
            let (id, datum) = wire::unframe(&framed).expect("framed");
            assert_eq!(id, 7);
            let generic = apache_avro::to_value(&o).and_then(|v| v.resolve(&schema)).expect("value");
            let expected = apache_avro::to_avro_datum(&schema, generic).expect("generic encoding");
            assert_eq!(datum, expected.as_slice());
            let mut reader = datum;
            let value = apache_avro::from_avro_datum(&schema, &mut reader, None).expect("decodes");
            let back: PayoutOutcome = apache_avro::from_value(&value).expect("deserializes");
            assert_eq!(back, o);
        }
    }

    #[test]
    fn provider_event_round_trips_through_its_schema() {
        use switchyard_canonical::{ProviderEvent, ProviderEventKind};
        let schema = Schema::parse_str(include_str!("../../../schemas/events/ProviderEvent.v1.avsc")).expect("schema");
        let encoder = AvroEncoder { schema: Arc::new(schema.clone()), schema_id: 9 };
        let event = ProviderEvent {
            event_id: "evt_1".into(),
            provider: "stripe".into(),
            domain: "payouts".into(),
            subject_id: "po-1".into(),
            provider_reference: "po_123".into(),
            kind: ProviderEventKind::PayoutReturned,
            vendor_event_type: "payout.failed".into(),
            amount_minor: Some(1250),
            currency: Some("EUR".into()),
            reason: Some("account_closed".into()),
            occurred_at_ms: 1_700_000_000_000,
            received_at_ms: 1_700_000_000_100,
            payload_sha256: "ab".repeat(32),
        };
        let framed = encoder.encode(&event).expect("encodes");
        let (_, mut datum) = wire::unframe(&framed).expect("framed");
        let value = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("decodes");
        let back: ProviderEvent = apache_avro::from_value(&value).expect("deserializes");
        assert_eq!(back, event);
    }

    /// Encodes `value` with `schema_json` and decodes it back: the schema and
    /// the serde type agree field by field, symbol by symbol.
    pub(super) fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(schema_json: &str, value: &T) {
        let schema = Schema::parse_str(schema_json).expect("schema");
        let encoder = AvroEncoder { schema: Arc::new(schema.clone()), schema_id: 11 };
        let framed = encoder.encode(value).expect("encodes");
        let (_, mut datum) = wire::unframe(&framed).expect("framed");
        let decoded = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("decodes");
        assert!(datum.is_empty(), "trailing bytes");
        let back: T = apache_avro::from_value(&decoded).expect("deserializes");
        assert_eq!(&back, value);
    }

    #[test]
    fn card_commands_outcomes_and_events_round_trip_through_their_schemas() {
        use switchyard_canonical::card::*;
        use switchyard_canonical::card_dispute::{DisputeReason, DisputeState};
        use switchyard_canonical::card_event::{CardEvent, CardEventKind};
        use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus, CardReplacement, ProvisioningResult};
        let command_schema = include_str!("../../../schemas/cards/CardCommand.v1.avsc");
        let address = |line2: Option<&str>| ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Main St".into(),
            line2: line2.map(Into::into),
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "GB".into(),
        };
        let bare = |action| CardCommand {
            card_id: "card-1".into(),
            idempotency_key: "k-1".into(),
            action,
            issue: None,
            pin: None,
            replace: None,
            provision: None,
            dispute: None,
            evidence: None,
            reason: None,
            requested_at_ms: 1_700_000_000_000,
        };
        let mut issue = bare(CardAction::Issue);
        issue.issue = Some(IssueSpec { form: CardForm::Physical, product: "debit".into(), cardholder_ref: "cust-1".into(), shipping: Some(address(Some("Flat 2"))) });
        let mut pin = bare(CardAction::SetPin);
        pin.pin = Some(PinSpec { encrypted_pin_block: Some("0412AC89FF3E21D7".into()), hosted_flow_token: None });
        let mut replace = bare(CardAction::Replace);
        replace.replace = Some(ReplaceSpec { reason: ReplaceReason::Stolen, new_card_id: "card-2".into(), shipping: Some(address(None)) });
        let mut provision = bare(CardAction::ProvisionToken);
        provision.provision = Some(ProvisionSpec {
            wallet: Wallet::ApplePay,
            certificates: vec!["leaf".into(), "sub".into()],
            nonce: Some("n".into()),
            nonce_signature: Some("s".into()),
            device_id: None,
            wallet_account_id: None,
        });
        let mut dispute = bare(CardAction::OpenDispute);
        dispute.dispute = Some(DisputeSpec { dispute_id: "dp-1".into(), transaction_ref: "tx-1".into(), amount_minor: 4_200, currency: "EUR".into(), reason: DisputeReason::NotReceived });
        let mut evidence = bare(CardAction::SubmitDisputeEvidence);
        evidence.evidence = Some(EvidenceSpec { dispute_id: "dp-1".into(), document_ref: "doc://x".into(), note: Some("n".into()) });
        let mut suspend = bare(CardAction::Suspend);
        suspend.reason = Some("cardholder asked".into());
        for c in [issue, pin, replace, provision, dispute, evidence, suspend, bare(CardAction::Terminate)] {
            round_trip(command_schema, &c);
        }

        let outcome_schema = include_str!("../../../schemas/cards/CardOutcome.v1.avsc");
        let mut full = CardOutcome::new(&bare(CardAction::Replace), CardOutcomeStatus::Succeeded);
        full.state = Some(CardState::Terminated);
        full.provider = Some("lithic".into());
        full.processor_reference = Some("tok".into());
        full.last_four = Some("4242".into());
        full.replacement = Some(CardReplacement { card_id: "card-2".into(), processor_reference: Some("tok2".into()), last_four: None, state: Some(CardState::Issued) });
        full.dispute_id = Some("dp-1".into());
        full.dispute_reference = Some("d".into());
        full.dispute_state = Some(DisputeState::PreArbitration);
        full.provisioning = Some(ProvisioningResult { step_up_required: false, activation_data: Some("a".into()), encrypted_data: None, ephemeral_public_key: Some("k".into()) });
        full.attempts = 2;
        full.replayed = true;
        let rejected = CardOutcome::rejected(
            &bare(CardAction::Activate),
            Some(CardRefusal::IllegalTransition),
            OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: "m".into() },
        );
        for o in [full, rejected] {
            round_trip(outcome_schema, &o);
        }

        let event = CardEvent {
            event_id: "card-1:3".into(),
            card_id: "card-1".into(),
            kind: CardEventKind::CardReinstated,
            from_state: Some("SUSPENDED".into()),
            to_state: Some("ACTIVE".into()),
            processor: "marqeta".into(),
            processor_reference: Some("tok".into()),
            last_four: Some("4242".into()),
            dispute_id: None,
            amount_minor: Some(-4_200),
            currency: Some("EUR".into()),
            linked_card_id: None,
            notify_cardholder: true,
            occurred_at_ms: 1,
            published_at_ms: 2,
        };
        round_trip(include_str!("../../../schemas/cards/CardEvent.v1.avsc"), &event);

        use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransaction, CardTransactionKind};
        let schema = include_str!("../../../schemas/cards/CardTransaction.v1.avsc");
        let declined = CardTransaction {
            transaction_event_id: "lithic:ev-1".into(),
            card_id: "card-1".into(),
            processor: "lithic".into(),
            processor_reference: "tok".into(),
            transaction_reference: "txn-1".into(),
            kind: CardTransactionKind::Authorization,
            amount_minor: 12_345,
            currency: "BHD".into(),
            approved: false,
            decline_code: Some(CardDeclineCode::InsufficientFunds),
            occurred_at_ms: 1,
            published_at_ms: 2,
        };
        let cleared = CardTransaction { kind: CardTransactionKind::Clearing, approved: true, decline_code: None, ..declined.clone() };
        for t in [declined, cleared] {
            round_trip(schema, &t);
        }
    }
}

#[cfg(test)]
#[path = "codec_openbanking_tests.rs"]
mod openbanking_tests;

#[cfg(test)]
#[path = "codec_enum_tests.rs"]
mod enum_tests;
