//! Cross-service tests live in `tests/`; the harness is the local stack.
//! [`checks`] adds what the KYC/AML/fraud tests need, [`cards`] what the
//! card tests need ([`card_webhooks`]: processors' transaction webhook
//! bodies), [`webhooks`] what the webhook ingester tests share.
pub mod card_webhooks;
pub mod cards;
pub mod checks;
pub mod fleet;
pub mod logs;
pub mod money;
pub mod secrets;
pub mod webhooks;
pub use switchyard_localstack::{command, workspace_binary, LocalStack as TestEnv, TopicReader};
