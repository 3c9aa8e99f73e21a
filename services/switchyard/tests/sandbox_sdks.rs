//! `switchyard sandbox` against the vendors' official SDKs: the binary is
//! started on free ports with its webhooks aimed at the receiver of
//! tests/sdk/test_sdks.py, which drives stripe, Adyen and onfido-python
//! (pinned in tests/sdk/requirements.txt, installed by ops/scripts/test.sh)
//! through create, retrieve, idempotent replay, conflicting keys, declines,
//! faults and webhook verification with each vendor's own helper. No Kafka.

mod common;

use common::{repo, Scratch};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every vendor the sandbox serves, as `--port` names them.
const VENDORS: [&str; 8] = ["stripe", "adyen", "onfido", "sumsub", "comply_advantage", "open_sanctions", "sardine", "seon"];

/// The sandbox process, killed when the test ends however it ends.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now, for the script's webhook receiver
/// (the sandbox's own ports are picked by the sandbox: `--port VENDOR=0`).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Fails the test, never skips it, when the SDKs are missing: a contract
/// check that silently does not run is worse than none.
fn require_sdks() {
    let out = Command::new("python3")
        .args(["-c", "import stripe, Adyen, onfido"])
        .output()
        .unwrap_or_else(|e| panic!("running python3 (3.9 or later is needed for tests/sdk): {e}"));
    assert!(
        out.status.success(),
        "the vendors' SDKs are not installed: run `python3 -m pip install -r tests/sdk/requirements.txt` \
         (ops/scripts/test.sh does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_sandbox(manifest: &Path, receiver_port: u16) -> Sandbox {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("sandbox");
    for v in VENDORS {
        cmd.args(["--port", &format!("{v}=0")]);
    }
    cmd.args(["--webhook-url", &format!("all=http://127.0.0.1:{receiver_port}/webhooks/{{vendor}}")])
        .args(["--faults", "sardine=slow"])
        .arg("--manifest")
        .arg(manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Sandbox(cmd.spawn().expect("switchyard sandbox starts"))
}

/// The manifest once the sandbox has written it; fails with the sandbox's
/// output if it exits or takes too long.
fn wait_for_manifest(sandbox: &mut Sandbox, manifest: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(manifest) {
            return serde_json::from_str(&text).expect("the manifest is JSON");
        }
        if let Ok(Some(status)) = sandbox.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = sandbox.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("switchyard sandbox exited with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "switchyard sandbox wrote no manifest within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_official_sdks_pass_against_the_sandbox() {
    require_sdks();
    let scratch = Scratch::new("sandbox-sdks");
    let manifest = scratch.path("sandbox.json");
    let receiver_port = free_port();
    let mut sandbox = start_sandbox(&manifest, receiver_port);
    let m = wait_for_manifest(&mut sandbox, &manifest);

    // What the flags asked for, before the SDKs use it.
    for v in VENDORS {
        let url = m["vendors"][v]["url"].as_str().unwrap_or_else(|| panic!("{v} missing from the manifest: {m}"));
        assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{v}: {url}");
    }
    assert_eq!(m["vendors"]["sardine"]["fault_profile"], "slow");
    assert_eq!(m["vendors"]["sardine"]["faults"]["latency_ms"], 300);
    assert_eq!(m["vendors"]["stripe"]["webhook"]["url"], format!("http://127.0.0.1:{receiver_port}/webhooks/stripe"));
    assert!(m["vendors"]["seon"]["webhook"].is_null(), "seon's simulator sends no webhooks");

    let (ok, report) = run_sdk_script(&manifest);
    println!("{report}");
    assert!(ok, "the official SDKs failed against switchyard sandbox:\n{report}");
    assert!(report.contains(" passed, 0 failed"), "{report}");
}

/// `python3 tests/sdk/test_sdks.py MANIFEST`, killed if it runs past
/// [`SCRIPT_LIMIT`]: success and its output (stdout, then stderr).
fn run_sdk_script(manifest: &Path) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg(repo().join("tests/sdk/test_sdks.py"))
        .arg(manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs tests/sdk/test_sdks.py");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = format!("{}{}", stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    match status {
        Some(s) => (s.success(), report),
        None => (false, format!("{report}\n(killed after {} s)", SCRIPT_LIMIT.as_secs())),
    }
}

/// The script takes about 20 s; this bounds a hang, not a slow machine.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn help_documents_the_ports_and_profiles() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["sandbox", "--help"]).output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for (v, port) in VENDORS.iter().zip(12111..) {
        assert!(help.contains(&format!("{v:<17} {port}")), "{v} {port} not in --help:\n{help}");
    }
    for profile in ["none", "slow", "flaky", "rate_limited", "down", "timeout"] {
        assert!(help.contains(profile), "{profile} not in --help");
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    for (v, port) in VENDORS.iter().zip(12111..) {
        assert!(readme.contains(&format!("| `{v}` | {port} |")), "README's sandbox ports table lacks {v} {port}");
    }
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("sandbox");
    for v in VENDORS {
        cmd.args(["--port", &format!("{v}=0")]);
    }
    let out = cmd.args(["--port", &format!("adyen={port}")]).stdin(Stdio::null()).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("adyen: cannot listen on 127.0.0.1:{port}")) && err.contains("--port adyen=PORT"), "{err}");
}
