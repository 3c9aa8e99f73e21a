//! `switchyard certs`: the inventory of a payout worker's mTLS material and
//! an ingester's PEM webhook keys, read from the configs as deployed.

use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path).display().to_string()
}

#[test]
fn lists_client_certificates_ca_bundles_and_webhook_keys_with_days_left() {
    let dir = std::env::temp_dir().join(format!("switchyard-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // The fixture certificate (CN=inventory test, not-after 2031-12-08)
    // stands in for both; the private key path does not exist, and the
    // inventory must not need it.
    let cert = repo("crates/adapters/tests/data/inventory-cert.pem");
    let worker = include_str!("../../../ops/payout-worker.example.yaml").replace(
        "base_url: http://127.0.0.1:12112",
        &format!("base_url: https://127.0.0.1:12112\n    tls: {{ client_cert: {{ file: {cert} }}, client_key: {{ file: /nonexistent/key.pem }}, ca_bundle: {{ file: {cert} }} }}"),
    );
    let worker_path = dir.join("payout-worker.yaml");
    std::fs::write(&worker_path, worker).expect("write");
    let ingester = format!(
        "bind: 127.0.0.1:0\nkafka: {{ brokers: 127.0.0.1:9092, group_id: x }}\nschema_registry_url: http://127.0.0.1:8081\ndatabase_url: \"sqlite::memory:\"\nproviders:\n  wise:\n    domain: payouts\n    keys: [{{ file: {} }}]\n  stripe:\n    domain: payouts\n    keys: [{{ value: whsec_c2VjcmV0LXZhbHVlLW5ldmVyLXNob3du }}]\n",
        repo("ops/dev-keys/wise-webhook-dev-public.pem")
    );
    let ingester_path = dir.join("ingester.yaml");
    std::fs::write(&ingester_path, ingester).expect("write");

    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["certs", "--config"])
        .arg(&worker_path)
        .arg(&ingester_path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let has = |provider: &str, kind: &str, needle: &str| rows.iter().any(|r| r[0] == provider && r[1] == kind && r.join(" ").contains(needle));
    assert!(has("adyen", "client_cert", "CN=inventory test CN=inventory test 2031-12-08T21:21:14Z"), "{stdout}");
    assert!(has("adyen", "ca_bundle", "2031-12-08T21:21:14Z"), "{stdout}");
    assert!(has("wise", "webhook_key", "public key - never -"), "{stdout}");
    assert_eq!(rows.len(), 3, "HMAC secrets are not listed: {stdout}");
    assert!(!stdout.contains("whsec_") && !stderr.contains("whsec_"), "{stdout}{stderr}");

    // Within the window, the command fails (for a CI or cron check).
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["certs", "--fail-within-days", "100000", "--config"])
        .arg(&worker_path)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 certificate(s) expire within 100000 days"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lists_the_card_processors_certificates() {
    let dir = std::env::temp_dir().join(format!("switchyard-card-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = repo("crates/adapters/tests/data/inventory-cert.pem");
    let worker = include_str!("../../../ops/card-worker.example.yaml").replace(
        "base_url: http://127.0.0.1:12131",
        &format!("base_url: https://127.0.0.1:12131\n    tls: {{ client_cert: {{ file: {cert} }}, client_key: {{ file: /nonexistent/key.pem }}, ca_bundle: {{ file: {cert} }} }}"),
    );
    let path = dir.join("card-worker.yaml");
    std::fs::write(&path, worker).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["certs", "--config"]).arg(&path).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(kinds, [("lithic", "client_cert"), ("lithic", "ca_bundle")], "{stdout}");
    assert!(!stdout.contains("lithic_sk_test") && !stderr.contains("lithic_sk_test"), "no key in the listing: {stdout}{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
