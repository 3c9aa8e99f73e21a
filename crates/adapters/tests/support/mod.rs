//! A replaying vendor: serves recorded exchanges from a fixture file over
//! real HTTP, so contract tests run the adapters' real send paths.
//!
//! Fixture: `{"description": "...", "exchanges": [{"method", "path",
//! "status", "body" | "raw" | "hang": true}]}`. A request takes the first
//! unused exchange with its method and path (the query string counts when
//! the fixture's path has one); anything unmatched gets a 599 so a test
//! fails loudly instead of hanging.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    status: u16,
    body: Vec<u8>,
    hang: bool,
    used: bool,
}

pub struct Replay {
    pub base_url: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    /// `METHOD path` of every request received, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Replay {
    /// Loads `tests/fixtures/<name>.json` and starts serving it.
    pub async fn start(name: &str) -> Replay {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let exchanges = json["exchanges"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no exchanges"))
            .iter()
            .map(|x| Exchange {
                method: x["method"].as_str().unwrap_or("GET").to_owned(),
                path: x["path"].as_str().unwrap_or("/").to_owned(),
                status: x["status"].as_u64().unwrap_or(200) as u16,
                body: match (&x["raw"], &x["body"]) {
                    (serde_json::Value::String(raw), _) => raw.clone().into_bytes(),
                    (_, serde_json::Value::Null) => Vec::new(),
                    (_, body) => body.to_string().into_bytes(),
                },
                hang: x["hang"].as_bool().unwrap_or(false),
                used: false,
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let replay = Replay { base_url, exchanges: Arc::new(Mutex::new(exchanges)), seen: Arc::default() };
        let (ex, seen) = (replay.exchanges.clone(), replay.seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, ex.clone(), seen.clone()));
            }
        });
        replay
    }

    /// Exchanges the adapter never asked for.
    pub fn unused(&self) -> Vec<String> {
        self.exchanges.lock().expect("lock").iter().filter(|x| !x.used && !x.hang).map(|x| format!("{} {}", x.method, x.path)).collect()
    }
}

async fn serve(mut stream: TcpStream, exchanges: Arc<Mutex<Vec<Exchange>>>, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned());
    seen.lock().expect("lock").push(format!("{method} {target}"));
    let found = {
        let mut ex = exchanges.lock().expect("lock");
        let bare = target.split('?').next().unwrap_or("").to_owned();
        let hit = ex.iter_mut().find(|x| !x.used && x.method == method && (x.path == target || (!x.path.contains('?') && x.path == bare)));
        hit.map(|x| {
            x.used = true;
            x.clone()
        })
    };
    let (status, body) = match found {
        Some(x) if x.hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        Some(x) => (x.status, x.body),
        None => (599, format!("{{\"fixture\":\"no exchange for {method} {target}\"}}").into_bytes()),
    };
    let reply = format!("HTTP/1.1 {status} Fixture\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}
