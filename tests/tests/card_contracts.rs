//! Card processor contracts: each card adapter and simulator checked
//! against the processor's own published API definition, trimmed in
//! `tests/contracts/` (source and version in its README). Same method as
//! vendor_contracts.rs: the real adapter drives the simulator through a
//! recording proxy, then
//! 1. every request body (POST and PATCH) validates against the operation's
//!    request schema, with no field the schema does not declare; query
//!    parameters are declared ones;
//! 2. every response, and every webhook the simulator sent, validates
//!    against the schema for its status (or event type), with no undeclared
//!    property;
//! 3. every field the adapter reads exists in the processor's schema.
//!
//! One test per processor; no broker needed.

#[allow(dead_code)]
#[path = "vendor_contracts/support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{ctx, report, transport, validate, wait_for, Contract, Recorder};
use switchyard_adapters::cards::{CardCall, CardRef};
use switchyard_adapters::Secret;
use switchyard_canonical::card::{CardForm, DisputeSpec, EvidenceSpec, IssueSpec, PinSpec, ProvisionSpec, ReplaceReason, ShippingAddress, Wallet};
use switchyard_canonical::card_dispute::DisputeReason;
use switchyard_simulators::WebhookTarget;

/// Webhook bodies against the schema of their `event_type`.
fn check_hooks(spec: &Contract, hooks: &[Value]) -> Vec<String> {
    let mut findings = Vec::new();
    for hook in hooks {
        let kind = hook["event_type"].as_str().unwrap_or_default();
        match spec.webhook_schema(kind) {
            Some(schema) => findings.extend(validate(spec, &schema, hook, true).into_iter().map(|e| format!("webhook {kind}: {e}"))),
            None => findings.push(format!("webhook {kind}: not a webhook of the pinned spec")),
        }
    }
    findings
}

fn address() -> ShippingAddress {
    ShippingAddress { name: "Ada Lovelace".into(), line1: "1 Main St".into(), line2: Some("Apt 2".into()), city: "New York".into(), postal_code: "10001".into(), country: "US".into() }
}

/// Fields the Lithic adapter reads, from
/// crates/adapters/src/cards/lithic/{transformers,webhook}.rs.
const LITHIC_FIELDS_READ: &[(&str, &str)] = &[
    ("non_pci_card_response", "token"),
    ("non_pci_card_response", "last_four"),
    ("non_pci_card_response", "state"),
    ("non_pci_card_response", "type"),
    ("non_pci_card_response", "memo"),
    ("non_pci_card_response", "product_id"),
    ("dispute-v1", "token"),
    ("dispute-v1", "status"),
    ("dispute-v1", "resolution_reason"),
    ("dispute-evidence", "dispute_token"),
    ("error", "message"),
    ("error", "debugging_request_id"),
    // webhook.rs, card_transaction.updated
    ("card_transaction", "token"),
    ("card_transaction", "card_token"),
    ("card_transaction", "amounts.cardholder.currency"),
    ("card_transaction", "events.*.token"),
    ("card_transaction", "events.*.type"),
    ("card_transaction", "events.*.created"),
    ("card_transaction", "events.*.result"),
    ("card_transaction", "events.*.amount"),
    ("card_transaction", "events.*.amounts.cardholder.amount"),
    ("card_transaction", "events.*.amounts.cardholder.currency"),
];

const LITHIC_KNOWN: &[(&str, &str)] = &[];

const LITHIC_API_KEY: &str = "lithic_sk_test_switchyard";

#[tokio::test]
async fn lithic_matches_lithics_openapi() {
    use switchyard_adapters::cards::lithic::LithicAdapter;
    use switchyard_simulators::lithic::{spawn_lithic, LithicConfig, MAGIC_DECLINE, MAGIC_STEP_UP};
    let spec = Contract::load("lithic/cards.json", "");
    let recorder = Recorder::start().await;
    let cfg = LithicConfig {
        webhook: Some(WebhookTarget { url: recorder.hook_url(), secret: "whsec_c3dpdGNoeWFyZC1jb250cmFjdC10ZXN0cy0wMQ==".into() }),
        ship_after: Duration::from_millis(100),
        ..LithicConfig::local()
    };
    let sim = spawn_lithic(cfg).await.expect("lithic simulator starts");
    recorder.forward_to(&sim.base_url());
    let a = LithicAdapter::new("lithic", &recorder.base_url(), Secret::new(LITHIC_API_KEY), transport()).expect("adapter");
    let ctx = ctx();
    let key = |k: &str| a.provider_key(k);

    let virt = IssueSpec { form: CardForm::Virtual, product: "debit".into(), cardholder_ref: "cust-1".into(), shipping: None };
    let issued = a.call(&CardCall::Issue { card_id: "card-1", spec: &virt }, &key("card-1:issue"), &ctx).await.expect("issue");
    let token = issued.processor_reference.clone().expect("token");
    let card = CardRef { card_id: "card-1", processor_reference: &token };
    a.call(&CardCall::Activate { card }, &key("card-1:activate"), &ctx).await.expect("activate");
    let pin = PinSpec { encrypted_pin_block: Some("0412AC89ABCDEF6701".into()), hosted_flow_token: None };
    a.call(&CardCall::SetPin { card, pin: &pin }, &key("card-1:pin"), &ctx).await.expect("pin");
    a.call(&CardCall::Suspend { card }, &key("card-1:suspend"), &ctx).await.expect("suspend");
    a.call(&CardCall::Reinstate { card }, &key("card-1:reinstate"), &ctx).await.expect("reinstate");
    let apple = |nonce: &str| ProvisionSpec {
        wallet: Wallet::ApplePay,
        certificates: vec!["bGVhZg==".into()],
        nonce: Some(nonce.into()),
        nonce_signature: Some("c2ln".into()),
        device_id: None,
        wallet_account_id: None,
    };
    a.call(&CardCall::ProvisionToken { card, spec: &apple("bm9uY2U=") }, &key("card-1:t1"), &ctx).await.expect("apple pay");
    a.call(&CardCall::ProvisionToken { card, spec: &apple(MAGIC_STEP_UP) }, &key("card-1:t2"), &ctx).await.expect("step-up");
    let google = ProvisionSpec { wallet: Wallet::GooglePay, certificates: vec![], nonce: None, nonce_signature: None, device_id: Some("d".into()), wallet_account_id: Some("w".into()) };
    a.call(&CardCall::ProvisionToken { card, spec: &google }, &key("card-1:t3"), &ctx).await.expect("google pay");
    let dispute = DisputeSpec { dispute_id: "dsp-1".into(), transaction_ref: "5e9483eb-8103-4e16-9794-2106111b2eca".into(), amount_minor: 999, currency: "USD".into(), reason: DisputeReason::NotReceived };
    let opened = a.call(&CardCall::OpenDispute { card, spec: &dispute }, &key("dsp-1:open"), &ctx).await.expect("dispute");
    let dref = opened.dispute_reference.expect("dispute token");
    let evidence = EvidenceSpec { dispute_id: "dsp-1".into(), document_ref: "docs://dsp-1/receipt.pdf".into(), note: None };
    a.call(&CardCall::SubmitDisputeEvidence { card, dispute_reference: &dref, spec: &evidence }, &key("dsp-1:ev"), &ctx).await.expect("evidence");
    a.call(&CardCall::Terminate { card }, &key("card-1:close"), &ctx).await.expect("close");
    a.call(&CardCall::Terminate { card }, &key("card-1:close"), &ctx).await.expect("close again: 400, then read");

    let ship = address();
    let phys = IssueSpec { form: CardForm::Physical, product: "42".into(), cardholder_ref: "cust-1".into(), shipping: Some(ship.clone()) };
    let p = a.call(&CardCall::Issue { card_id: "card-2", spec: &phys }, &key("card-2:issue"), &ctx).await.expect("physical");
    let ptoken = p.processor_reference.expect("token");
    let pcard = CardRef { card_id: "card-2", processor_reference: &ptoken };
    let replace = CardCall::Replace { card: pcard, new_card_id: "card-3", reason: ReplaceReason::Stolen, shipping: Some(&ship) };
    a.call(&replace, &key("card-2:replace"), &ctx).await.expect("replace");
    a.find("card-3", &ctx).await.expect("find").expect("found");
    let declined = IssueSpec { product: MAGIC_DECLINE.into(), ..phys.clone() };
    a.call(&CardCall::Issue { card_id: "card-4", spec: &declined }, &key("card-4:issue"), &ctx).await.expect_err("422");
    let wrong = LithicAdapter::new("lithic", &recorder.base_url(), Secret::new("wrong"), transport()).expect("adapter");
    wrong.call(&CardCall::Activate { card }, &key("x"), &ctx).await.expect_err("401");
    recorder.get("/v1/cards/00000000-0000-4000-8000-000000000000", &[("authorization", LITHIC_API_KEY)]).await;
    recorder.get(&format!("/v1/disputes/{dref}"), &[("authorization", LITHIC_API_KEY)]).await;

    // card.created x3 (card-4 was declined), card.updated x5 (activate,
    // suspend, reinstate, close; card-2 closed as stolen), card.shipped
    // (card-3; card-2 was closed before it shipped), dispute.updated.
    let hooks = wait_for(&recorder, 10, Duration::from_secs(10)).await;
    assert_eq!(hooks.len(), 10, "{hooks:?}");
    let kinds: Vec<&str> = hooks.iter().filter_map(|h| h["event_type"].as_str()).collect();
    for kind in ["card.created", "card.updated", "card.shipped", "dispute.updated"] {
        assert!(kinds.contains(&kind), "no {kind} among {kinds:?}");
    }
    let mut findings = support::check_json_exchanges(&spec, &recorder.exchanges(), &["POST", "PATCH"]);
    findings.extend(check_hooks(&spec, &hooks));
    findings.extend(support::fields_read(&spec, LITHIC_FIELDS_READ));
    sim.shutdown().await;
    report(&findings, LITHIC_KNOWN);
}

/// Marqeta Core API (Swagger 2.0, converted by extract.py): the adapter and
/// simulator in crates/{adapters/src/cards,simulators/src}/marqeta.
mod marqeta_contract {
    use std::time::Duration;

    use super::support::{self, ctx, exists, report, transport, validate, wait_for, Contract, Exchange, Recorder};
    use serde_json::{json, Value};
    use switchyard_adapters::cards::marqeta::MarqetaAdapter;
    use switchyard_adapters::cards::{CardCall, CardRef};
    use switchyard_adapters::Secret;
    use switchyard_canonical::card::{CardForm, DisputeSpec, IssueSpec, PinSpec, ProvisionSpec, ReplaceReason, ShippingAddress, Wallet};
    use switchyard_canonical::card_dispute::DisputeReason;
    use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig, MarqetaWebhook};

    const APP_TOKEN: &str = "app_token_switchyard";
    const ACCESS_TOKEN: &str = "access_token_switchyard";

    /// Fields the Marqeta adapter reads, from
    /// crates/adapters/src/cards/marqeta/{transformers,webhook}.rs. Keep in
    /// step with those deserializers.
    const FIELDS_READ: &[(&str, &str)] = &[
        ("card_response", "token"),
        ("card_response", "user_token"),
        ("card_response", "card_product_token"),
        ("card_response", "last_four"),
        ("card_response", "state"),
        ("card_response", "fulfillment_status"),
        ("card_response", "pin_is_set"),
        ("card_response", "metadata"),
        ("card_transition_response", "state"),
        ("card_transition_response", "fulfillment_status"),
        ("control_token_response", "control_token"),
        ("digital_wallet_apple_pay_provision_response", "activation_data"),
        ("digital_wallet_apple_pay_provision_response", "encrypted_pass_data"),
        ("digital_wallet_apple_pay_provision_response", "ephemeral_public_key"),
        ("digital_wallet_android_pay_provision_response", "push_tokenize_request_data.opaque_payment_card"),
        ("chargeback_response", "token"),
        ("chargeback_response", "state"),
        // webhook.rs
        ("card_transition_response", "token"),
        ("card_transition_response", "card_token"),
        ("card_transition_response", "type"),
        ("card_transition_response", "created_time"),
        ("digital_wallet_token_transition_response", "token"),
        ("digital_wallet_token_transition_response", "type"),
        ("digital_wallet_token_transition_response", "created_time"),
        ("digital_wallet_token_transition_response", "fulfillment_status"),
        ("digital_wallet_token_transition_response", "digital_wallet_token.card_token"),
        ("chargeback_transition_response", "token"),
        ("chargeback_transition_response", "chargeback_token"),
        ("chargeback_transition_response", "state"),
        ("chargeback_transition_response", "created_time"),
        ("transaction_model", "token"),
        ("transaction_model", "type"),
        ("transaction_model", "state"),
        ("transaction_model", "amount"),
        ("transaction_model", "currency_code"),
        ("transaction_model", "card_token"),
        ("transaction_model", "preceding_related_transaction_token"),
        ("transaction_model", "created_time"),
        ("transaction_model", "user_transaction_time"),
        ("transaction_model", "response.code"),
    ];

    const KNOWN: &[(&str, &str)] = &[(
        "POST /cards: the simulator answered 401",
        "Marqeta's definition declares no 401 on any operation; the API refuses bad Basic credentials with 401 \
         (its authentication guide), which the simulator does",
    )];

    /// Webhook categories and the schema of their events.
    const WEBHOOK_SCHEMAS: &[(&str, &str)] = &[
        ("cardtransitions", "card_transition_response"),
        ("digitalwallettokentransitions", "digital_wallet_token_transition_response"),
        ("chargebacktransitions", "chargeback_transition_response"),
        ("transactions", "transaction_model"),
    ];

    fn findings(spec: &Contract, exchanges: &[Exchange]) -> Vec<String> {
        let mut findings = support::check_json_exchanges(spec, exchanges, &["POST", "PUT"]);
        for x in exchanges {
            for name in support::query_names(&x.query) {
                if name == "show_pan" || name == "show_cvv_number" {
                    findings.push(format!("{} {}: asked for {name}: the PAN and CVV are never requested", x.method, x.path));
                }
            }
        }
        findings
    }

    fn hook_findings(spec: &Contract, hooks: &[Value]) -> Vec<String> {
        let mut findings = Vec::new();
        for body in hooks {
            let Some(categories) = body.as_object() else {
                findings.push(format!("webhook body is not an object: {body}"));
                continue;
            };
            let events: usize = categories.values().filter_map(Value::as_array).map(Vec::len).sum();
            if events > 10 {
                findings.push(format!("webhook batch of {events} events (Marqeta sends at most 10)"));
            }
            for (category, list) in categories {
                let Some((_, schema)) = WEBHOOK_SCHEMAS.iter().find(|(c, _)| c == category) else {
                    findings.push(format!("webhook category {category} is not one switchyard maps"));
                    continue;
                };
                for event in list.as_array().into_iter().flatten() {
                    let errors = validate(spec, &spec.schema_ref(schema), event, true);
                    findings.extend(errors.into_iter().map(|e| format!("webhook {category} ({schema}): {e}")));
                }
            }
        }
        findings
    }

    fn shipping(line1: &str) -> ShippingAddress {
        ShippingAddress { name: "Ada Lovelace".into(), line1: line1.into(), line2: Some("Flat 2".into()), city: "London".into(), postal_code: "N1 9GU".into(), country: "GB".into() }
    }

    #[tokio::test]
    async fn marqeta() {
        let spec = Contract::load("marqeta/core.json", "/v3");
        let recorder = Recorder::start().await;
        let mut hook = MarqetaWebhook::new(recorder.hook_url(), "marqeta-hooks", "hook-password");
        hook.secret = Some("marqeta-signing-secret".into());
        let cfg = MarqetaConfig { webhook: Some(hook), ship_after: Duration::from_millis(200), ..MarqetaConfig::local() };
        let reveals = cfg.pan_reveals.clone();
        let sim = spawn_marqeta(cfg).await.expect("marqeta simulator starts");
        recorder.forward_to(&sim.base_url());
        let base = format!("{}/v3", recorder.base_url());
        let adapter = MarqetaAdapter::new("marqeta", &base, Secret::new(APP_TOKEN), Secret::new(ACCESS_TOKEN), transport()).expect("adapter");
        let ctx = ctx();
        let call = |c: CardCall<'static>, key: &'static str| {
            let adapter = adapter.clone();
            let ctx = ctx.clone();
            async move { adapter.call(&c, &adapter.provider_key(key), &ctx).await }
        };
        fn leak<T>(v: T) -> &'static T {
            Box::leak(Box::new(v))
        }

        let virtual_spec = leak(IssueSpec { form: CardForm::Virtual, product: "prod-debit".into(), cardholder_ref: "user-1".into(), shipping: None });
        let physical_spec = leak(IssueSpec { form: CardForm::Physical, product: "prod-debit".into(), cardholder_ref: "user-1".into(), shipping: Some(shipping("1 Main St")) });
        let v = call(CardCall::Issue { card_id: "card-v", spec: virtual_spec }, "k-v").await.expect("virtual issued");
        call(CardCall::Issue { card_id: "card-v", spec: virtual_spec }, "k-v").await.expect("retry: 409, then GET");
        let p = call(CardCall::Issue { card_id: "card-p", spec: physical_spec }, "k-p").await.expect("physical issued");
        let v_token: &'static str = leak(v.processor_reference.expect("token")).as_str();
        let p_token: &'static str = leak(p.processor_reference.expect("token")).as_str();
        let card_v = CardRef { card_id: "card-v", processor_reference: v_token };
        let card_p = CardRef { card_id: "card-p", processor_reference: p_token };

        call(CardCall::Activate { card: card_v }, "k-v-act").await.expect("activated");
        call(CardCall::Suspend { card: card_v }, "k-v-sus").await.expect("suspended");
        call(CardCall::Reinstate { card: card_v }, "k-v-rei").await.expect("reinstated");
        let block = leak(PinSpec { encrypted_pin_block: Some("0412AC89FFEDCBA9".into()), hosted_flow_token: None });
        call(CardCall::SetPin { card: card_v, pin: block }, "k-v-pin").await.expect("PIN set");
        let apple = leak(ProvisionSpec {
            wallet: Wallet::ApplePay,
            certificates: vec!["bGVhZg==".into()],
            nonce: Some("stepup-nonce".into()),
            nonce_signature: Some("c2ln".into()),
            device_id: None,
            wallet_account_id: None,
        });
        call(CardCall::ProvisionToken { card: card_v, spec: apple }, "k-v-ap").await.expect("apple");
        let google = leak(ProvisionSpec {
            wallet: Wallet::GooglePay,
            certificates: vec![],
            nonce: None,
            nonce_signature: None,
            device_id: Some("device-1".into()),
            wallet_account_id: Some("wallet-1".into()),
        });
        call(CardCall::ProvisionToken { card: card_v, spec: google }, "k-v-gp").await.expect("google");
        // The issuer's side of a step-up (its own operations; the adapter never
        // sends them): read the card's wallet tokens, make the held one ACTIVE.
        let listed: Value = reqwest::Client::new()
            .get(format!("{base}/digitalwallettokens/card/{v_token}"))
            .basic_auth(APP_TOKEN, Some(ACCESS_TOKEN))
            .send()
            .await
            .expect("proxy answers")
            .json()
            .await
            .expect("token list is JSON");
        let held = listed["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["fulfillment_status"] == "DECISION_YELLOW")
            .and_then(|t| t["token"].as_str())
            .unwrap_or_else(|| panic!("a token held for step-up among {listed}"))
            .to_owned();
        let activated = reqwest::Client::new()
            .post(format!("{base}/digitalwallettokentransitions"))
            .basic_auth(APP_TOKEN, Some(ACCESS_TOKEN))
            .json(&json!({ "digital_wallet_token": { "token": held, "card_token": v_token }, "state": "ACTIVE", "channel": "API", "reason_code": "00" }))
            .send()
            .await
            .expect("proxy answers");
        assert_eq!(activated.status().as_u16(), 201);
        let dispute = leak(DisputeSpec { dispute_id: "dsp-1".into(), transaction_ref: "txn-1".into(), amount_minor: 1999, currency: "USD".into(), reason: DisputeReason::NotReceived });
        let opened = call(CardCall::OpenDispute { card: card_v, spec: dispute }, "k-v-dsp").await.expect("dispute");
        call(CardCall::OpenDispute { card: card_v, spec: dispute }, "k-v-dsp").await.expect("dispute retry");
        let replacement_shipping = leak(shipping("2 New St"));
        call(CardCall::Replace { card: card_p, new_card_id: "card-p2", reason: ReplaceReason::Stolen, shipping: Some(replacement_shipping) }, "k-p-rep")
            .await
            .expect("replaced");
        call(CardCall::Terminate { card: card_v }, "k-v-ter").await.expect("terminated");
        call(CardCall::Activate { card: card_v }, "k-v-act2").await.expect_err("terminated is final: 400");
        let declined = leak(IssueSpec { cardholder_ref: "declined-user".into(), ..virtual_spec.clone() });
        call(CardCall::Issue { card_id: "card-d", spec: declined }, "k-d").await.expect_err("declined: 400");
        let wrong = MarqetaAdapter::new("marqeta", &base, Secret::new(APP_TOKEN), Secret::new("wrong"), transport()).expect("adapter");
        wrong.call(&CardCall::Issue { card_id: "card-w", spec: virtual_spec }, "k-w", &ctx).await.expect_err("401");
        // A chargeback moves on at Marqeta (its own operation; the adapter never sends it).
        let reference = opened.dispute_reference.expect("chargeback token");
        let moved = reqwest::Client::new()
            .post(format!("{base}/chargebacks/transitions"))
            .basic_auth(APP_TOKEN, Some(ACCESS_TOKEN))
            .json(&json!({ "chargeback_token": reference, "state": "REPRESENTMENT", "reason": "merchant responded" }))
            .send()
            .await
            .expect("proxy answers");
        assert_eq!(moved.status().as_u16(), 201);

        // Fulfillment events of the physical cards arrive over ~400 ms.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let hooks = wait_for(&recorder, 1, Duration::from_secs(5)).await;
        assert!(!hooks.is_empty(), "Marqeta sent webhooks");
        let kinds: Vec<String> = hooks
            .iter()
            .flat_map(|h| h["cardtransitions"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        for want in ["fulfillment.issued", "fulfillment.shipped", "state.activated", "state.suspended", "state.reinstated", "state.terminated"] {
            assert!(kinds.iter().any(|k| k == want), "{want} among {kinds:?}");
        }
        let wallet_events: Vec<&Value> = hooks.iter().flat_map(|h| h["digitalwallettokentransitions"].as_array().into_iter().flatten()).collect();
        assert!(wallet_events.iter().any(|e| e["fulfillment_status"] == "DECISION_YELLOW"), "step-up told by webhook: {wallet_events:?}");

        let mut all = findings(&spec, &recorder.exchanges());
        all.extend(hook_findings(&spec, &hooks));
        all.extend(
            FIELDS_READ
                .iter()
                .filter(|(schema, path)| !exists(&spec, &spec.schema_ref(schema), path))
                .map(|(schema, path)| format!("adapter reads {schema}.{path}, which the schema does not declare")),
        );
        assert_eq!(reveals.count(), 0, "nobody asked Marqeta for a PAN or CVV");
        report(&all, KNOWN);
        sim.shutdown().await;
    }
}

/// The transaction webhook bodies `card_transactions.rs` sends
/// (`switchyard_e2e::card_webhooks`) against the pinned documents: Lithic's
/// `card_transaction.updated` and Marqeta's `transaction_model`, unknown
/// fields refused.
#[test]
fn the_transaction_webhooks_the_tests_send_are_the_vendors_shapes() {
    use switchyard_e2e::card_webhooks::{lithic_transaction, lithic_transaction_event, marqeta_transaction, marqeta_transactions};
    let lithic = Contract::load("lithic/cards.json", "");
    let (card, txn) = ("7ff4e4a4-2e6b-4ad5-8d3b-6a3c5c1f0c11", "c3b1a0f2-3b8e-4e0e-9a57-43f7d1e2a001");
    let event = |token: &str, kind: &str, result: &str| lithic_transaction_event(token, kind, result, 1250, "USD");
    let bodies = [
        lithic_transaction(card, txn, "PENDING", "USD", &[event("0b6f9c9e-51f4-4a4f-9d38-0d1c9f6c0a01", "AUTHORIZATION", "APPROVED")]),
        lithic_transaction(
            card,
            txn,
            "SETTLED",
            "USD",
            &[event("0b6f9c9e-51f4-4a4f-9d38-0d1c9f6c0a01", "AUTHORIZATION", "APPROVED"), event("0b6f9c9e-51f4-4a4f-9d38-0d1c9f6c0a02", "CLEARING", "APPROVED")],
        ),
        lithic_transaction(card, txn, "DECLINED", "USD", &[event("0b6f9c9e-51f4-4a4f-9d38-0d1c9f6c0a03", "AUTHORIZATION", "INSUFFICIENT_FUNDS")]),
    ];
    let mut findings = check_hooks(&lithic, &bodies);
    let marqeta = Contract::load("marqeta/core.json", "/v3");
    let items = [
        marqeta_transaction("t-1", "authorization", "PENDING", "10.29", "USD", "c-1", None),
        marqeta_transaction("t-2", "authorization.clearing", "COMPLETION", "10.29", "USD", "c-1", Some("t-1")),
        marqeta_transaction("t-3", "refund", "COMPLETION", "12.345", "BHD", "c-1", None),
        marqeta_transaction("t-4", "authorization", "DECLINED", "1500", "JPY", "c-1", None),
    ];
    let batch: Value = serde_json::from_slice(&marqeta_transactions(&items)).expect("json");
    for item in batch["transactions"].as_array().into_iter().flatten() {
        let errors = validate(&marqeta, &marqeta.schema_ref("transaction_model"), item, true);
        findings.extend(errors.into_iter().map(|e| format!("marqeta transaction: {e}")));
    }
    report(&findings, &[]);
}
