//! An unreachable database stops start-up quickly, naming where it looked
//! and why, and never the password.

use std::time::{Duration, Instant};
use switchyard_store::Store;

#[tokio::test]
async fn an_unreachable_database_is_named_with_its_refusal_within_the_connect_timeout() {
    // Bound and dropped: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1);
    let started = Instant::now();
    let Err(e) = Store::connect(&format!("postgres://app:s3cret@127.0.0.1:{port}/payments")).await else {
        panic!("connected to a closed port");
    };
    let message = e.to_string();
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}: {message}", started.elapsed());
    assert!(message.contains(&format!("127.0.0.1:{port}")), "names host:port: {message}");
    assert!(message.to_lowercase().contains("refused"), "says it was refused: {message}");
    assert!(!message.contains("s3cret") && !message.contains("app:"), "no credentials: {message}");
}
