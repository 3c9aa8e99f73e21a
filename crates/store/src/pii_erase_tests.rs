use super::*;
use crate::{AuditEntry, Claim, Completion};

const HOLDER: &str = "Zora Quillfeather";
const IBAN: &str = "DE02100100109307118603";

async fn seed_payout(store: &crate::Store, keys: &PiiKeys, payout: &str, scope: &str) {
    let pool = store.pool();
    keys.insert_many(&[(payout_key_subject(payout), "k1:wrapped".into())]).await.expect("key");
    // The reconciler's table, as ReconStore creates it (this store has no recon pool).
    crate::schema::create_all(
        pool,
        &["CREATE TABLE IF NOT EXISTS recon_commands (scope TEXT NOT NULL, subject_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, \
           command TEXT NOT NULL, PRIMARY KEY (scope, subject_id, idempotency_key))"],
    )
    .await
    .expect("recon_commands");
    // A row stored before sealing: the personal fields in clear.
    let command = serde_json::json!({
        "payout_id": payout, "idempotency_key": format!("k-{payout}"), "amount_minor": 4200, "currency": "EUR",
        "beneficiary": {"name": HOLDER, "iban": IBAN, "country": "DE"}, "rail": "STANDARD", "reference": format!("rent {HOLDER}"),
        "requested_at_ms": 1,
    });
    sqlx::query("INSERT INTO recon_commands (scope, subject_id, idempotency_key, command) VALUES ($1, $2, $3, $4)")
        .bind(scope)
        .bind(payout)
        .bind(format!("k-{payout}"))
        .bind(command.to_string())
        .execute(pool)
        .await
        .expect("command");
    let claim = Claim {
        domain: "payouts".into(),
        idempotency_key: format!("k-{payout}"),
        fingerprint: "fp".into(),
        subject_id: payout.into(),
        provider: "stripe".into(),
        provider_key: "pk".into(),
        correlation_id: "corr".into(),
        lease_owner: "w".into(),
        lease_ttl_ms: 1000,
    };
    store.claim(claim.clone()).await.expect("claim");
    let outcome = serde_json::json!({
        "payout_id": payout, "status": "FAILED", "amount_minor": 4200, "currency": "EUR",
        "error": {"class": "PERMANENT", "code": "INVALID_BENEFICIARY", "message": format!("account of {HOLDER} is closed")},
    });
    store.complete(Completion { claim, outcome_json: outcome.to_string(), attempts: 1 }).await.expect("complete");
    let call = serde_json::json!({
        "provider": "stripe", "operation": "create", "result": "failed", "http_status": 400, "latency_ms": 37,
        "error": format!("permanent/invalid_beneficiary: account {IBAN} of {HOLDER} is closed"),
    });
    for (action, detail) in [("vendor_call", call.to_string()), ("route", r#"{"provider":"stripe","resumed":false}"#.to_owned())] {
        let entry = AuditEntry { actor: "payout-worker", action, subject_id: payout, correlation_id: "corr", detail: &detail };
        store.audit(entry).await.expect("audit");
    }
}

#[tokio::test]
async fn erasing_a_payout_shreds_its_key_blanks_its_texts_and_keeps_the_facts() {
    for store in crate::test_stores().await {
        let keys = PiiKeys::open(&store).await.expect("keys");
        let run = switchyard_canonical::now_ms();
        let (payout, scope) = (format!("po-erase-{run}"), format!("scope-{run}"));
        seed_payout(&store, &keys, &payout, &scope).await;

        let done = keys.erase_subject(&Subject::Payout(payout.clone()), "dpo-7").await.expect("erase");
        assert_eq!((done.kind, done.key_destroyed, done.commands, done.outcome_texts, done.audit_texts), ("payout", true, 1, 1, 1), "{done:?}");
        assert!(done.tables.contains(&"recon_commands") && done.tables.contains(&"audit_log"), "{:?}", done.tables);
        assert_eq!(keys.wrapped(&payout_key_subject(&payout)).await.expect("read"), None, "the data key is gone");

        let pool = store.pool();
        let command: String = sqlx::query("SELECT command FROM recon_commands WHERE scope = $1 AND subject_id = $2")
            .bind(&scope)
            .bind(&payout)
            .fetch_one(pool)
            .await
            .expect("row kept")
            .try_get("command")
            .expect("command");
        let command: Value = serde_json::from_str(&command).expect("json");
        assert_eq!((command["amount_minor"].as_i64(), command["currency"].as_str()), (Some(4200), Some("EUR")), "{command}");
        assert_eq!(command["beneficiary"]["country"], "DE");
        let record = store.record("payouts", &format!("k-{payout}")).await.expect("read").expect("record kept");
        let outcome = record.outcome.expect("outcome kept");
        assert!(outcome.contains("INVALID_BENEFICIARY") && outcome.contains(REDACTED), "{outcome}");
        let trail = store.audit_trail(&[payout.as_str()]).await.expect("trail");
        let call = trail.iter().find(|e| e.action == "vendor_call").expect("vendor call kept");
        assert!(call.detail.contains("\"error\":\"permanent/invalid_beneficiary: [erased]\"") && call.detail.contains("\"latency_ms\":37"), "{}", call.detail);
        assert!(trail.iter().any(|e| e.action == "route"), "entries without free text stay as they were");
        let attestation = trail.iter().find(|e| e.action == "pii_erased").expect("attested");
        assert_eq!(attestation.actor, "dpo-7");
        assert!(attestation.detail.contains("\"kind\":\"payout\"") && attestation.detail.contains("\"commands\":1"), "{}", attestation.detail);
        for e in &trail {
            assert!(!e.detail.contains("Quillfeather") && !e.detail.contains(IBAN), "personal data left in {e:?}");
        }
        let rows = sqlx::query("SELECT command FROM recon_commands WHERE subject_id = $1").bind(&payout).fetch_all(pool).await.expect("rows");
        for r in rows {
            let c: String = r.try_get("command").expect("command");
            assert!(!c.contains("Quillfeather") && !c.contains(IBAN), "{c}");
        }

        let again = keys.erase_subject(&Subject::Payout(payout.clone()), "dpo-7").await.expect("erase again");
        assert_eq!((again.key_destroyed, again.commands, again.outcome_texts, again.audit_texts), (false, 0, 0, 0), "nothing left: {again:?}");
    }
}

#[test]
fn only_free_text_is_redacted_and_codes_stay() {
    assert_eq!(redact_text("permanent/invalid_beneficiary: Ada's account"), Some("permanent/invalid_beneficiary: [erased]".into()));
    assert_eq!(redact_text("permanent/invalid_beneficiary: [erased]"), None, "already redacted");
    assert_eq!(redact_text("transient/vendor_timeout"), None, "a code is no personal data");
    assert_eq!(redact_text("Ada Lovelace: card returned"), Some(REDACTED.into()), "a prefix that is not a code goes too");
    assert_eq!(redact_detail(r#"{"latency_ms":3,"error":null}"#), None);
    assert_eq!(redact_detail("not json"), None);
    let blank = blank_command(r#"{"beneficiary":{"name":"Ada","iban":"DE00","country":"DE"},"reference":"r","amount_minor":5}"#).expect("changed");
    assert!(!blank.contains("Ada") && !blank.contains("DE00") && blank.contains("\"amount_minor\":5") && blank.contains("\"personal\":\"erased\""), "{blank}");
}

#[tokio::test]
async fn erasing_a_card_replaces_vendor_texts_and_keeps_the_card() {
    use crate::cards::{CardRow, CardStore, CardWrite, Commit};
    for store in crate::test_stores().await {
        let keys = PiiKeys::open(&store).await.expect("keys");
        let cards = CardStore::open(&store).await.expect("cards");
        let card = format!("card-erase-{}", switchyard_canonical::now_ms());
        let row = CardRow {
            card_id: card.clone(),
            processor: "marqeta".into(),
            processor_reference: Some("tok_1".into()),
            last_four: Some("4242".into()),
            state: "ordered".into(),
            lifecycle: "{}".into(),
            version: 1,
            issue_key: "k-issue".into(),
            disputes: "{}".into(),
        };
        let outcome = serde_json::json!({
            "card_id": card, "status": "FAILED",
            "error": {"class": "PERMANENT", "code": "INVALID_REQUEST", "message": format!("address of {HOLDER} undeliverable")},
        })
        .to_string();
        let held = serde_json::json!({"provider": "marqeta", "attempts": 3, "reason": format!("processor said: {HOLDER} unknown")}).to_string();
        let write = CardWrite {
            card_id: &card,
            idempotency_key: "k-issue",
            outcome: &outcome,
            rows: vec![(&row, None)],
            events: vec![],
            audit: vec![("pending_unknown", held)],
            correlation_id: "corr",
        };
        assert_eq!(cards.commit(&write).await.expect("commit"), Commit::Applied);

        let done = keys.erase_subject(&Subject::Card(card.clone()), "dpo-8").await.expect("erase");
        assert_eq!((done.kind, done.key_destroyed, done.outcome_texts, done.audit_texts), ("card", false, 1, 1), "{done:?}");
        let applied: String = sqlx::query("SELECT outcome FROM card_applied WHERE card_id = $1")
            .bind(&card)
            .fetch_one(store.pool())
            .await
            .expect("applied kept")
            .try_get("outcome")
            .expect("outcome");
        assert!(applied.contains("INVALID_REQUEST") && applied.contains(REDACTED) && !applied.contains("Quillfeather"), "{applied}");
        let trail = store.audit_trail(&[card.as_str()]).await.expect("trail");
        assert!(trail.iter().all(|e| !e.detail.contains("Quillfeather")), "{trail:?}");
        assert!(trail.iter().any(|e| e.action == "pending_unknown" && e.detail.contains("\"attempts\":3")), "{trail:?}");
        assert!(trail.iter().any(|e| e.action == "pii_erased" && e.detail.contains("card_applied")), "{trail:?}");
    }
}

#[tokio::test]
async fn erasing_an_applicant_replaces_the_names_of_their_screening_matches_only() {
    for store in crate::test_stores().await {
        let keys = PiiKeys::open(&store).await.expect("keys");
        let views = crate::gateway::GatewayStore::open(&store).await.expect("gateway");
        let run = switchyard_canonical::now_ms();
        // `_` is a LIKE wildcard: the neighbour's id matches the pattern, not the subject.
        let (applicant, neighbour) = (format!("app_{run}"), format!("appX{run}"));
        let view = |subject: &str| {
            serde_json::json!({
                "id": format!("scr-{subject}"), "subject_id": subject, "status": "potential_match", "terminal": false,
                "matches": [{"list": "pep", "matched_name": HOLDER, "score": 0.91, "matched_fields": ["name"]}], "updated_at_ms": 1,
            })
            .to_string()
        };
        for s in [&applicant, &neighbour] {
            views.upsert_resource("aml", &format!("scr-{s}"), "potential_match", &view(s), 1).await.expect("view");
        }
        let done = keys.erase_subject(&Subject::Applicant(applicant.clone()), "dpo-9").await.expect("erase");
        assert_eq!((done.kind, done.gateway_views), ("applicant", 1), "{done:?}");
        let mine = views.resource("aml", &format!("scr-{applicant}")).await.expect("read").expect("view kept");
        assert!(!mine.body.contains("Quillfeather") && mine.body.contains("\"score\":0.91") && mine.body.contains("\"list\":\"pep\""), "{}", mine.body);
        let theirs = views.resource("aml", &format!("scr-{neighbour}")).await.expect("read").expect("view");
        assert!(theirs.body.contains(HOLDER), "another applicant's view is left alone: {}", theirs.body);
    }
}
