//! `switchyard scorecard` against a real PostgreSQL audit log: vendor calls
//! seeded in a database of the test's own (the shared test database holds
//! every other test's calls), the CLI run as a process, and its figures
//! checked against values computed by hand below. The HTML report is then
//! rendered by headless Chromium and its charts looked for in the DOM.
//!
//! Chromium comes with Debian's `chromium` package (ops/scripts/test.sh
//! installs it). Without it the HTML half prints a notice and passes, unless
//! `CI` or `SWITCHYARD_REQUIRE_CHROMIUM` is set.

mod common;

use anyhow::{bail, ensure, Context, Result};
use std::process::Stdio;
use std::time::Duration;
use switchyard_store::Store;

const HOUR: i64 = 3_600_000;

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

fn base_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (server, _) = url.rsplit_once('/').context("DATABASE_URL has no database name")?;
    Ok(format!("{server}/{name}"))
}

/// UTC as the scorecard prints it, by `date(1)`: an implementation
/// independent of the one under test.
fn utc(ms: i64) -> Result<String> {
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{}", ms / 1000), "+%Y-%m-%d %H:%M UTC"]).output()?;
    ensure!(out.status.success(), "date: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

struct Seed<'a> {
    pool: &'a sqlx::AnyPool,
}

impl Seed<'_> {
    async fn entry(&self, at_ms: i64, actor: &str, action: &str, detail: &str) -> Result<()> {
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ($1, $2, $3, 's', 'c', $4)")
            .bind(at_ms)
            .bind(actor)
            .bind(action)
            .bind(detail)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// A payout worker's entry (its `result` is ok/failed, the error beside it).
    async fn payout(&self, at_ms: i64, latency_ms: u64, status: Option<u16>, error: Option<&str>) -> Result<()> {
        let detail = serde_json::json!({
            "provider": "stripe", "operation": "create_payout",
            "result": if error.is_some() { "failed" } else { "ok" },
            "http_status": status, "latency_ms": latency_ms, "request_id": "req_1", "error": error,
        });
        self.entry(at_ms, "payout-worker", "vendor_call", &detail.to_string()).await
    }
}

/// Seeds the calls whose figures the test expects. `h` is the start of the
/// current hour; every call falls in a whole hour before it.
async fn seed(pool: &sqlx::AnyPool, h: i64) -> Result<()> {
    let s = Seed { pool };
    // Hours h-6 and h-5: 20 calls each, 100, 200, ... 2000 ms, all ok.
    for hour in [h - 6 * HOUR, h - 5 * HOUR] {
        for i in 1..=20u64 {
            s.payout(hour + i as i64, i * 100, Some(200), None).await?;
        }
    }
    // Hour h-4: 20 calls at 100 ms; one timed out, one met a 409.
    for i in 0..18 {
        s.payout(h - 4 * HOUR + i, 100, Some(200), None).await?;
    }
    s.payout(h - 4 * HOUR + 20, 100, None, Some("transient/timeout: vendor call timed out")).await?;
    s.payout(h - 4 * HOUR + 21, 100, Some(409), Some("transient/vendor_unavailable: HTTP 409: request with this key in progress")).await?;
    // Hour h-3: 20 calls at 100 ms, all ok.
    for i in 0..20 {
        s.payout(h - 3 * HOUR + i, 100, Some(200), None).await?;
    }
    // Hour h-2: 5 calls at 5000 ms, all failed (two 504s, three 503s): too
    // few calls for the bucket to be judged.
    for (i, status) in [504, 504, 503, 503, 503].into_iter().enumerate() {
        s.payout(h - 2 * HOUR + i as i64, 5000, Some(status), Some("transient/vendor_unavailable: x")).await?;
    }
    // KYC (the check worker's shape): 10, 20, 30, 40 ms in hour h-3.
    for ms in [10, 20, 30, 40] {
        let detail = serde_json::json!({"provider": "onfido", "operation": "kyc", "result": "ok", "http_status": 200, "latency_ms": ms});
        s.entry(h - 3 * HOUR + ms, "kyc-worker", "vendor_call", &detail.to_string()).await?;
    }
    // Cards: a lookup finding nothing is a healthy answer.
    for (result, ms) in [("found", 30), ("not_found", 50)] {
        let detail = serde_json::json!({"provider": "marqeta", "operation": "find", "result": result, "http_status": 200, "latency_ms": ms});
        s.entry(h - 3 * HOUR, "card-worker", "vendor_call", &detail.to_string()).await?;
    }
    // Left out: a call three days back (outside --since 1d), another action,
    // and an entry that cannot be read (counted, not guessed at).
    s.payout(h - 72 * HOUR, 100, Some(200), None).await?;
    s.entry(h - 3 * HOUR, "payout-worker", "route", r#"{"provider":"stripe","result":"ok","latency_ms":1}"#).await?;
    s.entry(h - 3 * HOUR, "payout-worker", "vendor_call", "{not json").await?;
    Ok(())
}

/// The figures of `section` (`payouts / stripe`): each line's words, joined
/// by single spaces.
fn section(out: &str, title: &str) -> Result<Vec<String>> {
    let start = out.find(&format!("\n{title}\n")).with_context(|| format!("no section {title} in:\n{out}"))?;
    let rest = &out[start + 1..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    Ok(rest[..end].lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scorecard_from_the_audit_log_prints_hand_computed_figures_and_renders_its_charts() -> Result<()> {
    let admin = Store::connect(&base_url()).await.context("PostgreSQL at DATABASE_URL")?;
    let name = format!("scorecard_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await?;
    let url = with_database(&base_url(), &name)?;
    let result = check(&url).await;
    // Dropped whatever the outcome; FORCE ends the CLI's leftover sessions.
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin.pool()).await;
    result?;
    dropped?;
    Ok(())
}

async fn check(url: &str) -> Result<()> {
    let store = Store::connect(url).await?;
    let now = switchyard_canonical::now_ms();
    let h = now / HOUR * HOUR;
    seed(store.pool(), h).await?;

    let scratch = common::Scratch::new("scorecard");
    let html = scratch.path("scorecard.html");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["scorecard", "--since", "1d", "--bucket", "hour", "--database-url", url, "--html"])
        .arg(&html)
        .arg("--catalog")
        .arg(common::repo().join("ops/partners.yaml"))
        .output()
        .await?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(out.status.success(), "scorecard failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    // The hour the run started in may have ended by now: the report's
    // buckets are fixed by `h`, whichever.
    ensure!(stdout.contains("1 audit entries could not be read"), "{stdout}");

    // 85 calls: 42 at 100 ms, two each of 200..2000 ms, five at 5000 ms.
    // Nearest rank: p50 = 43rd = 200, p95 = 81st = 5000, p99 = 85th = 5000.
    // Errors 1 + 1 + 5 = 7 (8.24 %), timeouts 1 + 2 = 3 (3.53 %), 409s 1 (1.18 %).
    let stripe = section(&stdout, "payouts / stripe")?;
    let expected = [
        "payouts / stripe".to_owned(),
        "calls 85".into(),
        "latency p50 200 ms".into(),
        "latency p95 5000 ms contract 800 ms BREACH".into(),
        "latency p99 5000 ms contract 1500 ms BREACH".into(),
        "error ratio 8.24 % contract 1.00 % BREACH".into(),
        "timeout ratio 3.53 % contract 0.50 % BREACH".into(),
        "409 collision ratio 1.18 %".into(),
        "webhook delay p95 n/a (source has no data)".into(),
        "breaker open time n/a (source has no data)".into(),
        "shadow agreement n/a (source has no data)".into(),
        // p95 and p99 of 100..2000 are 1900 and 2000 in h-6 and h-5; h-4
        // has 2 errors and 1 timeout of 20 (10 %, 5 %); h-2's five calls are
        // too few to judge.
        format!("breach p95 latency {} -> {} (2 h, worst 1900 ms)", utc(h - 6 * HOUR)?, utc(h - 4 * HOUR)?),
        format!("breach p99 latency {} -> {} (2 h, worst 2000 ms)", utc(h - 6 * HOUR)?, utc(h - 4 * HOUR)?),
        format!("breach error ratio {} -> {} (1 h, worst 10.00 %)", utc(h - 4 * HOUR)?, utc(h - 3 * HOUR)?),
        format!("breach timeout ratio {} -> {} (1 h, worst 5.00 %)", utc(h - 4 * HOUR)?, utc(h - 3 * HOUR)?),
    ];
    ensure!(stripe == expected, "stripe section:\n{}\nexpected:\n{}", stripe.join("\n"), expected.join("\n"));

    // ceil(0.5 * 4) = 2nd of 10, 20, 30, 40; p95 and p99 the 4th. No contract.
    let kyc = section(&stdout, "kyc / onfido")?;
    for line in ["(no contracted SLA in the catalog)", "calls 4", "latency p50 20 ms", "latency p95 40 ms", "latency p99 40 ms", "error ratio 0.00 %"] {
        ensure!(kyc.iter().any(|l| l == line), "kyc: no {line:?} in {kyc:?}");
    }
    let cards = section(&stdout, "cards / marqeta")?;
    ensure!(cards.iter().any(|l| l == "calls 2") && cards.iter().any(|l| l == "error ratio 0.00 %"), "cards: {cards:?}");
    ensure!(!stdout.contains("route"), "only vendor calls count: {stdout}");

    render_in_chromium(&html, h, &scratch).await
}

fn chromium() -> Option<String> {
    let candidates = [std::env::var("CHROMIUM").ok(), Some("/usr/bin/chromium".into()), Some("chromium".into())];
    candidates.into_iter().flatten().find(|c| std::process::Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()))
}

/// Runs headless Chromium with `args` and returns its stdout.
async fn run_chromium(binary: &str, args: &[String]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(binary);
    // No sandbox: the tests run as root in containers, where Chromium's
    // sandbox cannot start; the page is our own file.
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"]).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.context("chromium did not finish in 120 s")??;
    ensure!(out.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Chromium's binary and the DOM it built from `html`; none when Chromium
/// is missing and not required.
async fn rendered(html: &std::path::Path) -> Result<Option<(String, String)>> {
    let Some(binary) = chromium() else {
        if flag("CI") || flag("SWITCHYARD_REQUIRE_CHROMIUM") {
            bail!("chromium is required (CI or SWITCHYARD_REQUIRE_CHROMIUM is set) but cannot be run");
        }
        eprintln!("SKIPPED: the HTML report was not rendered: chromium is not installed (`apt-get install chromium`)");
        return Ok(None);
    };
    let page = format!("file://{}", html.canonicalize()?.display());
    let dom = run_chromium(&binary, &["--dump-dom".into(), page]).await?;
    Ok(Some((binary, dom)))
}

async fn render_in_chromium(html: &std::path::Path, h: i64, scratch: &common::Scratch) -> Result<()> {
    let Some((binary, dom)) = rendered(html).await? else { return Ok(()) };
    let page = format!("file://{}", html.canonicalize()?.display());
    let stripe = dom
        .split("<section")
        .find(|s| s.contains(r#"data-provider="stripe""#))
        .with_context(|| format!("no stripe section in the rendered DOM: {dom}"))?;
    // Five hours with calls: three latency and two ratio points each.
    let latency = chart(stripe, "latency")?;
    ensure!(latency.matches("<circle").count() == 15, "latency chart points: {latency}");
    let ratios = chart(stripe, "ratios")?;
    ensure!(ratios.matches("<circle").count() == 10, "ratio chart points: {ratios}");
    for (svg, point) in [
        (latency, format!(r#"data-series="p99" data-bucket="{}" data-value="2000""#, h - 6 * HOUR)),
        (latency, format!(r#"data-series="p50" data-bucket="{}" data-value="1000""#, h - 5 * HOUR)),
        (latency, format!(r#"data-series="p95" data-bucket="{}" data-value="5000""#, h - 2 * HOUR)),
        (ratios, format!(r#"data-series="errors" data-bucket="{}" data-value="0.1""#, h - 4 * HOUR)),
        (ratios, format!(r#"data-series="timeouts" data-bucket="{}" data-value="0.4""#, h - 2 * HOUR)),
        (latency, r#"data-threshold="1500""#.to_owned()),
        (ratios, r#"data-threshold="0.01""#.to_owned()),
        (ratios, r#"data-threshold="0.005""#.to_owned()),
        (latency, format!(r#"data-measure="p99 latency" data-start="{}" data-end="{}""#, h - 6 * HOUR, h - 4 * HOUR)),
    ] {
        ensure!(svg.contains(&point), "no {point} in the rendered chart: {svg}");
    }
    ensure!(!dom.contains("<script"), "the report runs no scripts");
    let kyc = dom.split("<section").find(|s| s.contains(r#"data-provider="onfido""#)).context("no onfido section")?;
    ensure!(chart(kyc, "latency")?.matches("<circle").count() == 3 && !kyc.contains("data-threshold"), "onfido: one hour, no contract: {kyc}");

    // And it draws: a full-page screenshot is a PNG of the window's size.
    let shot = scratch.path("scorecard.png");
    run_chromium(&binary, &[format!("--screenshot={}", shot.display()), "--window-size=900,2400".into(), page]).await?;
    let png = std::fs::read(&shot).context("no screenshot written")?;
    ensure!(png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    ensure!((size(16), size(20)) == (900, 2400), "screenshot is {}x{}", size(16), size(20));
    Ok(())
}

/// The `<svg data-chart="kind">...</svg>` within `html`.
fn chart<'a>(html: &'a str, kind: &str) -> Result<&'a str> {
    let start = html.find(&format!(r#"data-chart="{kind}""#)).with_context(|| format!("no {kind} chart"))?;
    let end = html[start..].find("</svg>").context("unclosed svg")?;
    Ok(&html[start..start + end])
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exposition a worker and the ingester would serve after `n` scrapes'
/// worth of traffic: per scrape, 20 Stripe payout calls (18 ok and one 409
/// within 50-100 ms, one 504 within 1-2.5 s), 3 agreeing and 1 disagreeing
/// shadow comparisons with Adyen, and 4 Stripe webhooks 60-300 s late.
fn exposition(n: u64) -> String {
    let mut out = String::from("# TYPE switchyard_vendor_call_duration_seconds histogram\n");
    let les = ["0.05", "0.1", "1", "2.5", "+Inf"];
    for (result, per_scrape, from) in [("ok", 18, 1), ("409", 1, 1), ("504", 1, 3)] {
        let labels = format!(r#"domain="payouts",provider="stripe",operation="create_payout",result="{result}""#);
        for (i, le) in les.iter().enumerate() {
            let count = if i >= from { per_scrape * n } else { 0 };
            out += &format!("switchyard_vendor_call_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n");
        }
        out += &format!("switchyard_vendor_call_duration_seconds_count{{{labels}}} {}\n", per_scrape * n);
        out += &format!("switchyard_vendor_call_duration_seconds_sum{{{labels}}} {}\n", per_scrape * n);
    }
    out += "# TYPE switchyard_shadow_comparisons_total counter\n";
    out += &format!("switchyard_shadow_comparisons_total{{domain=\"payouts\",candidate=\"adyen\",result=\"agree\"}} {}\n", 3 * n);
    out += &format!("switchyard_shadow_comparisons_total{{domain=\"payouts\",candidate=\"adyen\",result=\"disagree\"}} {n}\n");
    // Stripe's breaker open (1), Adyen's half-open (2): only open counts.
    out += "# TYPE switchyard_circuit_state gauge\n";
    out += "switchyard_circuit_state{domain=\"payouts\",provider=\"stripe\"} 1\nswitchyard_circuit_state{domain=\"payouts\",provider=\"adyen\"} 2\n";
    out += "# TYPE switchyard_webhooks_lag_seconds histogram\n";
    for (le, count) in [("60", 0), ("300", 4 * n), ("+Inf", 4 * n)] {
        out += &format!("switchyard_webhooks_lag_seconds_bucket{{provider=\"stripe\",le=\"{le}\"}} {count}\n");
    }
    out += &format!("switchyard_webhooks_lag_seconds_count{{provider=\"stripe\"}} {}\nswitchyard_webhooks_lag_seconds_sum{{provider=\"stripe\"}} {}\n", 4 * n, 3 * n);
    out
}

/// Serves `exposition(n)` on `/metrics`, n counting scrapes; returns the address.
async fn exporter() -> Result<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = exposition(scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1);
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// A real Prometheus scrapes the series the workers export (served with
/// growing counters), and the scorecard reads it over the HTTP API. The
/// counts Prometheus extrapolates are not exact, so the checks are on what
/// is: ratios, and quantiles interpolated within the histogram's buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scorecard_from_a_real_prometheus_scrape_prints_its_figures_and_charts() -> Result<()> {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if std::process::Command::new(&binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        if flag("CI") || flag("SWITCHYARD_REQUIRE_PROMTOOL") {
            bail!("prometheus is required (CI or SWITCHYARD_REQUIRE_PROMTOOL is set) but `{binary}` cannot be run");
        }
        eprintln!("SKIPPED: prometheus is not installed (`apt-get install --no-install-recommends prometheus`)");
        return Ok(());
    }
    // Scrape within one hour's bucket: close to the hour's end, wait for the
    // next (the wait below takes at most two minutes).
    let left = HOUR - switchyard_canonical::now_ms() % HOUR;
    if left < 150_000 {
        tokio::time::sleep(Duration::from_millis(u64::try_from(left)? + 1000)).await;
    }
    let target = exporter().await?;
    let scratch = common::Scratch::new("scorecard-prometheus");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{target}']\n");
    std::fs::write(scratch.path("prometheus.yml"), config)?;
    let _prometheus = Child(
        std::process::Command::new(&binary)
            .arg(format!("--config.file={}", scratch.path("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", scratch.path("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path("prometheus.log"))?)
            .spawn()
            .context("starting prometheus")?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    // Five scrapes in, and a whole minute boundary past the first: the
    // breaker's open time is sampled once a minute (the report's
    // granularity), so before that there is no sample of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let value = |reply: &serde_json::Value| reply["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    loop {
        ensure!(std::time::Instant::now() < deadline, "prometheus did not scrape for a minute: {}", std::fs::read_to_string(scratch.path("prometheus.log"))?);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut seen = Vec::new();
        for query in ["count_over_time(up[1h])", "count_over_time(switchyard_circuit_state{provider=\"stripe\"}[1h:60s])"] {
            let Ok(reply) = http.get(format!("{base}/api/v1/query")).query(&[("query", query)]).send().await else { break };
            let Ok(reply) = reply.json::<serde_json::Value>().await else { break };
            seen.push(value(&reply));
        }
        if seen.len() == 2 && seen[0] >= 5.0 && seen[1] >= 1.0 {
            break;
        }
    }

    let html = scratch.path("scorecard.html");
    let before = switchyard_canonical::now_ms();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["scorecard", "--since", "1d", "--bucket", "hour", "--prometheus", &base, "--html"])
        .arg(&html)
        .arg("--catalog")
        .arg(common::repo().join("ops/partners.yaml"))
        .output()
        .await?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(out.status.success(), "scorecard failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    let stripe = section(&stdout, "payouts / stripe")?;
    let line = |name: &str| stripe.iter().find(|l| l.starts_with(name)).cloned().unwrap_or_default();
    let calls: f64 = line("calls").trim_start_matches("calls ").parse().with_context(|| format!("calls in {stripe:?}"))?;
    ensure!(calls >= 40.0, "at least two scrapes' calls: {stripe:?}");
    // Per scrape 20 calls: 19 within (0.05, 0.1] s, one within (1, 2.5] s.
    // p50: rank 10 of 20 -> 0.05 + 0.05 * 10/19 = 76.3 ms; p95: rank 19 ->
    // 0.1 s; p99: rank 19.8 -> 1 + 1.5 * 0.8 = 2.2 s.
    let expected = [
        "latency p50 76 ms",
        "latency p95 100 ms contract 800 ms ok",
        "latency p99 2200 ms contract 1500 ms BREACH",
        // Errors: the 409 and the 504 of 20; timeouts: the 504.
        "error ratio 10.00 % contract 1.00 % BREACH",
        "timeout ratio 5.00 % contract 0.50 % BREACH",
        "409 collision ratio 5.00 %",
        // 4 webhooks within (60, 300] s: rank 3.8 -> 60 + 240 * 3.8/4 = 288 s.
        "webhook delay p95 288.0 s contract 60.0 s BREACH",
    ];
    for want in expected {
        ensure!(stripe.iter().any(|l| l == want), "no {want:?} in:\n{}", stripe.join("\n"));
    }
    // Adyen only shadows: 3 of 4 comparisons agree. Its breaker was only
    // ever half-open; Stripe's was open at each minute's sample.
    let adyen = section(&stdout, "payouts / adyen")?;
    ensure!(adyen.iter().any(|l| l.starts_with("shadow agreement 75.00 % of")), "adyen: {adyen:?}");
    ensure!(adyen.iter().any(|l| l == "breaker open time 0s"), "adyen: {adyen:?}");
    let open = line("breaker open time");
    ensure!(open.starts_with("breaker open time ") && open.ends_with("m 00s"), "whole minutes open: {stripe:?}");
    // The breaches end with the hour the scrapes ran in: the one the run
    // started in, or the next if the hour turned meanwhile.
    let ends = [utc((before / HOUR + 1) * HOUR)?, utc((switchyard_canonical::now_ms() / HOUR + 1) * HOUR)?];
    for measure in ["p99 latency", "error ratio", "timeout ratio", "webhook delay"] {
        let breach = |l: &&String| l.starts_with(&format!("breach {measure} ")) && ends.iter().any(|end| l.contains(&format!("-> {end}")));
        ensure!(stripe.iter().any(|l| breach(&l)), "no {measure} breach to {ends:?}: {stripe:?}");
    }

    let Some((_, dom)) = rendered(&html).await? else { return Ok(()) };
    let section = dom.split("<section").find(|s| s.contains(r#"data-provider="stripe""#)).context("no stripe section")?;
    let latency = chart(section, "latency")?;
    ensure!(latency.contains(r#"data-series="p99""#) && latency.contains(r#"data-value="2200""#) && latency.contains(r#"data-threshold="1500""#), "{latency}");
    let ratios = chart(section, "ratios")?;
    ensure!(ratios.contains(r#"data-series="errors""#) && ratios.contains(r#"data-value="0.1""#), "{ratios}");
    let delay = chart(section, "webhook-delay")?;
    ensure!(delay.matches("<circle").count() >= 1 && delay.contains(r#"data-value="288000""#) && delay.contains(r#"data-threshold="60000""#), "{delay}");
    Ok(())
}
