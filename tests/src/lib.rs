//! Cross-service tests live in `tests/`; the harness is the local stack.
//! [`checks`] adds what the KYC/AML/fraud tests need.
pub mod checks;
pub use switchyard_localstack::{command, workspace_binary, LocalStack as TestEnv, TopicReader};
