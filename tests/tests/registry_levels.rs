//! The registry enforces each topic's compatibility level from topics.yaml,
//! not its own default (BACKWARD): a change `switchyard schemas check`
//! refuses for a FULL_TRANSITIVE topic is refused on register too, so a
//! producer deployed around the CI gate cannot publish it.

use anyhow::Result;
use switchyard_localstack::LocalStack;

const PAYOUT_COMMAND: &str = include_str!("../../schemas/payouts/PayoutCommand.v1.avsc");

#[tokio::test]
async fn the_registry_holds_a_full_transitive_topic_to_its_level() -> Result<()> {
    let stack = LocalStack::new("levels").await?;
    let subject = format!("{}-value", stack.topic("payouts.commands.v1"));
    stack.registry_client.register(&subject, PAYOUT_COMMAND).await?;

    // Dropping a field without a default: new readers cope (BACKWARD), but
    // consumers still on v1 cannot read what the new schema writes.
    let mut schema: serde_json::Value = serde_json::from_str(PAYOUT_COMMAND)?;
    let fields = schema["fields"].as_array_mut().expect("a record");
    let before = fields.len();
    fields.retain(|f| f["name"] != "currency");
    assert_eq!(fields.len(), before - 1, "the test removes one field");
    let narrowed = schema.to_string();
    let refused = stack.registry_client.register(&subject, &narrowed).await;
    let message = refused.expect_err("a forward-incompatible change to a FULL_TRANSITIVE topic is refused").to_string();
    assert!(message.contains("409"), "refused as incompatible: {message}");

    let config: serde_json::Value = reqwest::get(format!("{}/config/{subject}", stack.registry.base_url())).await?.json().await?;
    assert_eq!(config["compatibilityLevel"], "FULL_TRANSITIVE", "{config}");
    Ok(())
}
