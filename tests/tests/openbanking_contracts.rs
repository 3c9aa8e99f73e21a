//! The Plaid adapter and the Plaid simulator checked against Plaid's own
//! OpenAPI document (github.com/plaid/plaid-openapi `2020-09-14.yml`,
//! trimmed to `tests/contracts/plaid/plaid.json`; source and commit in
//! `x-switchyard-source`), so the two cannot share a wrong assumption:
//!
//! 1. every request the adapter sent validates against the operation's
//!    request schema (credentials in the body, `count`, `cursor`, ...);
//! 2. every reply the simulator gave, errors included, validates against
//!    the response schema for its status (`default`: Plaid's error
//!    object), with no property Plaid's schema does not declare;
//! 3. every field the adapter reads exists in Plaid's response schemas.
//!
//! The adapter is driven through a recording proxy in front of the
//! simulator, through the happy path and every error it maps. No broker needed.

#[allow(dead_code)] // shared with vendor_contracts.rs and kyc_contracts.rs
#[path = "vendor_contracts/support.rs"]
mod support;

use std::time::Duration;
use support::{check_json_exchanges, ctx, fields_read, report, transport, Contract, Recorder};
use switchyard_adapters::openbanking::plaid::PlaidAdapter;
use switchyard_adapters::openbanking::{HandoffRequest, ObFailure};
use switchyard_adapters::Secret;
use switchyard_canonical::openbanking::ConsentScope;
use switchyard_canonical::ErrorClass;
use switchyard_simulators::plaid::{spawn_plaid, PlaidConfig};

/// Response fields the Plaid adapter reads, from
/// crates/adapters/src/openbanking/plaid.rs (`*` = every array item). Keep
/// in step with its deserializers.
const PLAID_FIELDS_READ: &[(&str, &str)] = &[
    ("LinkTokenCreateResponse", "link_token"),
    ("LinkTokenCreateResponse", "expiration"),
    ("LinkTokenGetResponse", "link_sessions.*.link_session_id"),
    ("LinkTokenGetResponse", "link_sessions.*.results.item_add_results.*.public_token"),
    ("LinkTokenGetResponse", "link_sessions.*.results.item_add_results.*.accounts.*.id"),
    ("LinkTokenGetResponse", "link_sessions.*.results.item_add_results.*.institution.name"),
    ("LinkTokenGetResponse", "link_sessions.*.results.item_add_results.*.institution.institution_id"),
    ("ItemPublicTokenExchangeResponse", "access_token"),
    ("ItemPublicTokenExchangeResponse", "item_id"),
    ("AccountsGetResponse", "accounts.*.account_id"),
    ("AccountsGetResponse", "accounts.*.name"),
    ("AccountsGetResponse", "accounts.*.mask"),
    ("AccountsGetResponse", "accounts.*.type"),
    ("AccountsGetResponse", "accounts.*.subtype"),
    ("AccountsGetResponse", "accounts.*.balances.available"),
    ("AccountsGetResponse", "accounts.*.balances.current"),
    ("AccountsGetResponse", "accounts.*.balances.limit"),
    ("AccountsGetResponse", "accounts.*.balances.iso_currency_code"),
    ("AccountsGetResponse", "accounts.*.balances.unofficial_currency_code"),
    ("TransactionsSyncResponse", "next_cursor"),
    ("TransactionsSyncResponse", "has_more"),
    ("TransactionsSyncResponse", "removed.*.transaction_id"),
    ("TransactionsSyncResponse", "removed.*.account_id"),
    ("TransactionsSyncResponse", "added.*.transaction_id"),
    ("TransactionsSyncResponse", "added.*.account_id"),
    ("TransactionsSyncResponse", "added.*.amount"),
    ("TransactionsSyncResponse", "added.*.iso_currency_code"),
    ("TransactionsSyncResponse", "added.*.unofficial_currency_code"),
    ("TransactionsSyncResponse", "added.*.date"),
    ("TransactionsSyncResponse", "added.*.name"),
    ("TransactionsSyncResponse", "added.*.merchant_name"),
    ("TransactionsSyncResponse", "added.*.pending"),
    ("TransactionsSyncResponse", "added.*.pending_transaction_id"),
    ("TransactionsSyncResponse", "added.*.personal_finance_category.primary"),
    ("TransactionsSyncResponse", "modified.*.transaction_id"),
    ("PlaidError", "error_type"),
    ("PlaidError", "error_code"),
    ("PlaidError", "request_id"),
];

#[tokio::test]
async fn the_plaid_adapter_and_simulator_agree_with_plaids_openapi_document() {
    let spec = Contract::load("plaid/plaid.json", "");
    let config = PlaidConfig::local();
    let sim = spawn_plaid(config.clone()).await.expect("plaid simulator");
    let recorder = Recorder::start().await;
    recorder.forward_to(&sim.base_url());
    let plaid = PlaidAdapter::new("plaid", &recorder.base_url(), &config.client_id, Secret::new(config.secret.clone()), transport())
        .expect("adapter")
        .with_page_size(10)
        .with_retry_after(Duration::from_secs(7), Duration::from_secs(3));
    let ctx = ctx();
    let scopes = [ConsentScope::Accounts, ConsentScope::Balances, ConsentScope::Transactions];
    let mut request = HandoffRequest {
        consent_id: "con-contract",
        customer_ref: "cust-1",
        country: "US",
        institution_id: Some("ins_109508"),
        redirect_uri: "https://app.example.com/linked",
        scopes: &scopes,
        reauth: None,
    };

    // The happy path: Link, exchange, accounts, balances, every sync page.
    let handoff = plaid.create_link_token(&ctx, &request).await.expect("link token");
    assert!(handoff.value.starts_with("link-sandbox-") && handoff.expires_at_ms > switchyard_canonical::now_ms());
    let public = sim.complete_link(&handoff.value).expect("public token");
    let granted = plaid.exchange_public_token(&ctx, &public).await.expect("exchange");
    // The session that produced the public token, found without exchanging it.
    let session = plaid.link_result(&ctx, &handoff.value, &Secret::new(public.clone())).await.expect("link token get").expect("the session");
    assert_eq!((session.account_ids.len(), session.institution_id.as_deref()), (2, Some("ins_109508")), "{session:?}");
    assert_eq!(plaid.link_result(&ctx, &handoff.value, &Secret::new("public-sandbox-other")).await.expect("link token get"), None);
    let token = granted.access_token.clone();
    assert_eq!(plaid.accounts(&ctx, &token, false).await.expect("accounts").balances.len(), 0);
    let snapshot = plaid.accounts(&ctx, &token, true).await.expect("balances");
    assert_eq!(snapshot.balances.iter().map(|b| b.current_minor).collect::<Vec<_>>(), [Some(11_000), Some(-41_000)], "a credit card's debt is negative");
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let page = plaid.transactions_sync(&ctx, &token, cursor.as_deref()).await.expect("sync page");
        added += page.added.len();
        cursor = Some(page.next_cursor);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(added, config.transactions_per_item);
    assert!(sim.change_transaction(&granted.provider_reference, &format!("txn_{}_00000", &granted.provider_reference[..10]), false));
    let modified = plaid.transactions_sync(&ctx, &token, cursor.as_deref()).await.expect("a modification");
    assert_eq!((modified.added.len(), modified.modified.len()), (0, 1));

    // Every error the adapter maps, from the simulator's error objects.
    let item = granted.provider_reference.clone();
    sim.product_not_ready(&item, true);
    assert!(matches!(plaid.transactions_sync(&ctx, &token, None).await, Err(ObFailure::NotReady { retry_after }) if retry_after == Duration::from_secs(3)));
    sim.product_not_ready(&item, false);
    sim.institution_down("ins_109508", Duration::from_secs(60));
    assert!(matches!(plaid.accounts(&ctx, &token, true).await, Err(ObFailure::InstitutionUnavailable { ref code, retry_after }) if code == "INSTITUTION_DOWN" && retry_after == Duration::from_secs(7)));
    sim.institution_down("ins_109508", Duration::ZERO);
    sim.institution_not_responding("ins_109508", 1);
    assert!(matches!(plaid.transactions_sync(&ctx, &token, None).await, Err(ObFailure::InstitutionUnavailable { ref code, .. }) if code == "INSTITUTION_NOT_RESPONDING"));
    sim.rate_limit(1);
    match plaid.transactions_sync(&ctx, &token, None).await {
        Err(ObFailure::Call(e)) => assert!(e.class == ErrorClass::Transient && e.retry_after.is_some(), "{e}"),
        other => panic!("rate limit: {other:?}"),
    }
    sim.fail_sync_after(0);
    match plaid.transactions_sync(&ctx, &token, None).await {
        Err(ObFailure::Call(e)) => assert_eq!(e.class, ErrorClass::Transient, "{e}"),
        other => panic!("500: {other:?}"),
    }
    sim.require_login(&item);
    assert!(matches!(plaid.transactions_sync(&ctx, &token, None).await, Err(ObFailure::LoginRequired)));
    // Update mode repairs it.
    request.reauth = Some(&token);
    let update = plaid.create_link_token(&ctx, &request).await.expect("update-mode link token");
    sim.complete_link(&update.value).expect("user repairs the login");
    plaid.accounts(&ctx, &token, false).await.expect("login repaired");
    match plaid.exchange_public_token(&ctx, &public).await {
        Err(ObFailure::AuthorizationSpent { code }) => assert_eq!(code, "INVALID_PUBLIC_TOKEN", "a public token is single use"),
        other => panic!("second exchange: {other:?}"),
    }
    plaid.remove_item(&ctx, &token).await.expect("remove");
    assert!(matches!(plaid.accounts(&ctx, &token, false).await, Err(ObFailure::ConnectionGone { .. })));
    plaid.remove_item(&ctx, &token).await.expect("removing twice is done");
    let wrong = PlaidAdapter::new("plaid", &recorder.base_url(), &config.client_id, Secret::new("wrong"), transport()).expect("adapter");
    match wrong.accounts(&ctx, &token, false).await {
        Err(ObFailure::Call(e)) => assert_eq!(e.class, ErrorClass::ManualRepair, "{e}"),
        other => panic!("bad keys: {other:?}"),
    }

    let exchanges = recorder.exchanges();
    let statuses: std::collections::BTreeSet<u16> = exchanges.iter().map(|x| x.status).collect();
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [200, 400, 429, 500], "every status class was exercised");
    let mut findings = check_json_exchanges(&spec, &exchanges, &["POST"]);
    findings.extend(fields_read(&spec, PLAID_FIELDS_READ));
    report(&findings, &[]);
    sim.shutdown().await;
}
