//! Cross-service tests live in `tests/`; the harness is the local stack.
pub use switchyard_localstack::{command, workspace_binary, LocalStack as TestEnv, TopicReader};
