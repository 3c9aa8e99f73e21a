//! Every enum of every schema in `schemas/`, every symbol: the Rust variant
//! of that name is written by [`AvroEncoder`] and read back by apache-avro's
//! own reader against the enum as the `.avsc` file declares it, and must
//! come back as the same symbol. The encoder writes a variant's position in
//! the Rust enum, not its symbol's index in the schema (apache-avro's
//! schema-guided serializer), so a Rust enum declared in another order than
//! its schema, or with a variant inserted, would publish a different, valid
//! symbol; round trips through our own decoder (which reads back by the
//! same positions) cannot see that. This test does.
//!
//! An enum found in a schema and missing from [`CHECKS`] fails the test:
//! a new enum is covered the day its schema is.

use super::*;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use switchyard_canonical as c;

/// Every `{"type": "enum", ...}` in a schema document.
fn enums_in(doc: &Json, out: &mut Vec<Json>) {
    match doc {
        Json::Object(map) => {
            if map.get("type").and_then(Json::as_str) == Some("enum") {
                out.push(doc.clone());
            }
            map.values().for_each(|v| enums_in(v, out));
        }
        Json::Array(items) => items.iter().for_each(|v| enums_in(v, out)),
        _ => {}
    }
}

/// Writes each of `avro_enum`'s symbols as the Rust `E` of that name and
/// reads it back independently; returns the mismatches.
fn check<E: Serialize + serde::de::DeserializeOwned>(avro_enum: &Json) -> Vec<String> {
    let schema = Schema::parse(avro_enum).expect("enum schema");
    let encoder = AvroEncoder { schema: Arc::new(schema.clone()), schema_id: 1 };
    let symbols: Vec<String> = serde_json::from_value(avro_enum["symbols"].clone()).expect("symbols");
    let mut wrong = Vec::new();
    for symbol in symbols {
        let Ok(variant) = serde_json::from_value::<E>(Json::String(symbol.clone())) else {
            wrong.push(format!("{symbol}: no Rust variant of that name"));
            continue;
        };
        let framed = match encoder.encode(&variant) {
            Ok(f) => f,
            Err(e) => {
                wrong.push(format!("{symbol}: not encoded: {e}"));
                continue;
            }
        };
        let (_, mut datum) = wire::unframe(&framed).expect("framed");
        match apache_avro::from_avro_datum(&schema, &mut datum, None) {
            Ok(apache_avro::types::Value::Enum(_, read)) if read == symbol => {}
            Ok(other) => wrong.push(format!("{symbol}: read back as {other:?}")),
            Err(e) => wrong.push(format!("{symbol}: unreadable: {e}")),
        }
    }
    wrong
}

type Check = fn(&Json) -> Vec<String>;

/// Avro enum name -> the Rust enum written into it. Several Avro names
/// share a Rust enum: the schemas repeat an enum under a second name
/// where a record uses it twice.
const CHECKS: &[(&str, Check)] = &[
    ("AmlAction", check::<c::aml::AmlAction>),
    ("SubjectKind", check::<c::aml::SubjectKind>),
    ("ScreeningList", check::<c::aml::ScreeningList>),
    ("AmlStatus", check::<c::aml::AmlStatus>),
    ("MatchedField", check::<c::aml::MatchedField>),
    ("FlowStep", check::<c::check::FlowStep>),
    ("CompensatedStep", check::<c::check::FlowStep>),
    ("ErrorClass", check::<c::ErrorClass>),
    ("ErrorCode", check::<c::ErrorCode>),
    ("CardAction", check::<c::card::CardAction>),
    ("CardForm", check::<c::card::CardForm>),
    ("ReplaceReason", check::<c::card::ReplaceReason>),
    ("Wallet", check::<c::card::Wallet>),
    ("DisputeReason", check::<c::card_dispute::DisputeReason>),
    ("CardEventKind", check::<c::card_event::CardEventKind>),
    ("CardOutcomeStatus", check::<c::card_outcome::CardOutcomeStatus>),
    ("CardState", check::<c::card::CardState>),
    ("ReplacementCardState", check::<c::card::CardState>),
    ("CardRefusal", check::<c::card::CardRefusal>),
    ("DisputeState", check::<c::card_dispute::DisputeState>),
    ("CardTransactionKind", check::<c::card_transaction::CardTransactionKind>),
    ("CardDeclineCode", check::<c::card_transaction::CardDeclineCode>),
    ("ProviderEventKind", check::<c::ProviderEventKind>),
    ("FraudAction", check::<c::fraud::FraudAction>),
    ("FraudEvent", check::<c::fraud::FraudEvent>),
    ("FeedbackKind", check::<c::fraud::FeedbackKind>),
    ("FraudStatus", check::<c::fraud::FraudStatus>),
    ("FraudDecision", check::<c::fraud::FraudDecision>),
    ("FraudReason", check::<c::fraud::FraudReason>),
    ("DocumentKind", check::<c::kyc::DocumentKind>),
    ("EvidenceDocumentKind", check::<c::kyc::DocumentKind>),
    ("KycStatus", check::<c::kyc::KycStatus>),
    ("KycReason", check::<c::kyc::KycReason>),
    ("PostingKind", check::<c::PostingKind>),
    ("OnboardingAction", check::<c::onboarding::OnboardingAction>),
    ("ManualVerdict", check::<c::onboarding::ManualVerdict>),
    ("OnboardingState", check::<c::onboarding::OnboardingState>),
    ("PreviousOnboardingState", check::<c::onboarding::OnboardingState>),
    ("OpenBankingAction", check::<c::openbanking::OpenBankingAction>),
    ("ConsentScope", check::<c::openbanking::ConsentScope>),
    ("Dataset", check::<c::openbanking::Dataset>),
    ("MissingDataset", check::<c::openbanking::Dataset>),
    ("RefreshTrigger", check::<c::openbanking::RefreshTrigger>),
    ("AccountKind", check::<c::openbanking_data::AccountKind>),
    ("ModifiedAccountKind", check::<c::openbanking_data::AccountKind>),
    ("Direction", check::<c::openbanking_data::Direction>),
    ("ModifiedDirection", check::<c::openbanking_data::Direction>),
    ("MissingReason", check::<c::openbanking_outcome::MissingReason>),
    ("OpenBankingKind", check::<c::openbanking_outcome::OpenBankingKind>),
    ("ConsentState", check::<c::openbanking_consent::ConsentState>),
    ("ToConsentState", check::<c::openbanking_consent::ConsentState>),
    ("PaymentStatus", check::<c::openbanking_payment::PaymentStatus>),
    ("ToPaymentStatus", check::<c::openbanking_payment::PaymentStatus>),
    ("PaymentFailureReason", check::<c::openbanking_outcome::PaymentFailureReason>),
    ("OpenBankingRefusal", check::<c::openbanking_outcome::OpenBankingRefusal>),
    ("HandoffKind", check::<c::openbanking_outcome::HandoffKind>),
    ("PayoutRail", check::<c::PayoutRail>),
    ("PayoutStatus", check::<c::PayoutStatus>),
    ("DiscrepancyClass", check::<c::DiscrepancyClass>),
    ("DiscrepancyStatus", check::<c::DiscrepancyStatus>),
    ("CircuitState", check::<c::routing::CircuitState>),
];

fn schema_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("schemas dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            schema_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "avsc") {
            out.push(path);
        }
    }
}

#[test]
fn every_enum_symbol_of_every_schema_is_read_back_as_itself() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut files = Vec::new();
    schema_files(&root, &mut files);
    files.sort();
    assert!(files.iter().any(|f| f.to_string_lossy().contains("cards")), "the card schemas are among them: {files:?}");
    let mut failures = Vec::new();
    let mut unknown = BTreeSet::new();
    let mut checked = 0;
    for file in &files {
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("json");
        let mut enums = Vec::new();
        enums_in(&doc, &mut enums);
        for e in enums {
            let name = e["name"].as_str().expect("enum name").to_owned();
            let Some((_, check)) = CHECKS.iter().find(|(n, _)| *n == name) else {
                unknown.insert(format!("{name} ({})", file.display()));
                continue;
            };
            checked += 1;
            failures.extend(check(&e).into_iter().map(|w| format!("{} {name}.{w}", file.display())));
        }
    }
    assert!(unknown.is_empty(), "enums with no Rust type in CHECKS: {unknown:?}");
    assert!(checked >= 80, "only {checked} enums found");
    assert!(failures.is_empty(), "{} symbols not written as themselves:\n{}", failures.len(), failures.join("\n"));
}
