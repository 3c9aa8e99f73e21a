//! Secret files as Kubernetes mounts them, and the audit entries of their
//! rotations, for the rotation tests.

use anyhow::Result;
use std::time::{Duration, Instant};
use switchyard_store::{AuditRecord, Store};

/// Writes `value` the way Kubernetes updates a secret volume: a new file
/// renamed over the old path, so a reader never sees half a key.
pub fn replace_secret_file(path: &std::path::Path, value: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{value}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The `secret_rotated` audit entries about `subject`, waiting up to `wait`
/// for the first one (none after `wait` is an answer too).
pub async fn rotations(store: &Store, subject: &str, wait: Duration) -> Result<Vec<AuditRecord>> {
    let deadline = Instant::now() + wait;
    loop {
        let found: Vec<AuditRecord> = store.audit_trail(&[subject]).await?.into_iter().filter(|e| e.action == "secret_rotated").collect();
        if !found.is_empty() || Instant::now() > deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
