//! `switchyard pii rewrap` (the binary): applicants' data keys wrapped
//! under an old key-encryption key are wrapped again under the new first
//! entry of the orchestrator config's `pii_keys`, so the old key can leave
//! the config: every sealed value then opens with the new key alone, and the
//! run is audited as `pii_rewrapped` (counts and key id, never a key).
//!
//! Its own SQLite store: a rewrap touches every subject of a database, and
//! the shared PostgreSQL holds other tests' subjects under other keys.

use anyhow::{ensure, Context, Result};
use switchyard_adapters::secret::SecretSource;
use switchyard_e2e::workspace_binary;
use switchyard_onboarding::pii::{Pii, PiiKeyConfig};
use switchyard_store::Store;

const OLD: &str = "b2xkLWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";
const NEW: &str = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";

fn keys(list: &[(&str, &str)]) -> Vec<PiiKeyConfig> {
    list.iter()
        .map(|(id, key)| PiiKeyConfig { id: (*id).into(), key: SecretSource::inline(key) })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrap_lets_the_old_key_encryption_key_go() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("switchyard-rewrap-{}-{}", std::process::id(), switchyard_canonical::now_ms()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite:{}?mode=rwc", dir.join("store.db").display());
    let store = Store::connect(&url).await?;
    let old = Pii::from_config(&store, &keys(&[("k1", OLD)])).await?;
    let mut sealed = Vec::new();
    for i in 0..5 {
        let subject = format!("cust-{i}");
        sealed.push((subject.clone(), old.seal(&subject, "flow-1", &format!("Ada Lovelace {i}")).await?));
    }

    // The orchestrator's config after the operator listed the new key first.
    let example = std::fs::read_to_string(switchyard_localstack::repo_root().join("ops/onboarding-orchestrator.example.yaml"))?;
    let mut config: serde_norway::Value = serde_norway::from_str(&example)?;
    config["database_url"] = serde_norway::Value::String(url.clone());
    config["pii_keys"] = serde_norway::from_str(&format!("[{{id: k2, key: {{value: '{NEW}'}}}}, {{id: k1, key: {{value: '{OLD}'}}}}]"))?;
    let config_path = dir.join("orchestrator.yaml");
    std::fs::write(&config_path, serde_norway::to_string(&config)?)?;

    let out = std::process::Command::new(workspace_binary("switchyard")?)
        .args(["pii", "rewrap", "--config"])
        .arg(&config_path)
        .args(["--actor", "ticket-7"])
        .env_remove("DATABASE_URL")
        .output()
        .context("run switchyard pii rewrap")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "rewrap failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    ensure!(stdout.contains("5 subject(s): 5 rewrapped under k2"), "{stdout}");
    ensure!(!stdout.contains(NEW) && !stdout.contains(OLD), "no key printed: {stdout}");

    let new_only = Pii::from_config(&store, &keys(&[("k2", NEW)])).await?;
    for (i, (subject, value)) in sealed.iter().enumerate() {
        let opened = new_only.open(subject, "flow-1", value).await.with_context(|| format!("{subject} needs the old key still"))?;
        ensure!(opened == format!("Ada Lovelace {i}"), "{opened}");
    }
    let trail = store.audit_trail(&["pii_keys"]).await?;
    let entry = trail.iter().find(|e| e.action == "pii_rewrapped").context("a pii_rewrapped audit entry")?;
    ensure!(entry.actor == "ticket-7", "{entry:?}");
    ensure!(entry.detail.contains("\"rewrapped\":5") && entry.detail.contains("\"key_id\":\"k2\""), "{}", entry.detail);
    ensure!(!entry.detail.contains(NEW) && !entry.detail.contains(OLD), "never a key: {}", entry.detail);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
