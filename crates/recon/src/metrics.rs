//! `/metrics` (Prometheus text), `/livez`, `/readyz` and `/health` for the reconciler. Counters
//! come from the running loops; open discrepancies and timers are read from
//! the store at scrape time, so every instance reports the same truth.

use crate::flows::FlowLatency;
use crate::ingest::IngestStats;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchyard_canonical::{DiscrepancyClass, DiscrepancyStatus};
use switchyard_store::recon::ReconStore;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Admin {
    store: ReconStore,
    stats: Arc<IngestStats>,
    flows: Arc<FlowLatency>,
}

/// Serves until `shutdown`; returns the bound address.
pub async fn serve(
    bind: SocketAddr,
    store: ReconStore,
    stats: Arc<IngestStats>,
    flows: Arc<FlowLatency>,
    health: &switchyard_service::Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(render)).with_state(Admin { store, stats, flows }).merge(health.router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok(addr)
}

async fn render(State(admin): State<Admin>) -> Result<String, StatusCode> {
    let s = &admin.stats;
    let mut out = String::new();
    let counters = [
        ("switchyard_recon_messages_total", "Messages consumed from the three topics.", s.messages.load(Ordering::Relaxed)),
        ("switchyard_recon_undecodable_total", "Messages skipped because they do not decode.", s.undecodable.load(Ordering::Relaxed)),
        ("switchyard_recon_evaluations_total", "Subjects judged, on ingest and by timer.", s.evaluated.load(Ordering::Relaxed)),
        ("switchyard_recon_discrepancies_opened_total", "Discrepancies opened or reopened.", s.opened.load(Ordering::Relaxed)),
        ("switchyard_recon_discrepancies_resolved_total", "Discrepancies resolved.", s.resolved.load(Ordering::Relaxed)),
        ("switchyard_recon_settled_total", "pending_unknown payouts settled by asking the vendor.", s.settled.load(Ordering::Relaxed)),
        (
            "switchyard_recon_out_of_order_events_total",
            "Provider events that arrived after a later stage of their payout (e.g. processing after paid); ignored.",
            s.out_of_order.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let tally = admin.store.tally().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let (timers, _) = admin.store.subject_counts().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    out.push_str("# HELP switchyard_recon_open_discrepancies Open discrepancies by class.\n# TYPE switchyard_recon_open_discrepancies gauge\n");
    for class in DiscrepancyClass::ALL {
        let n: i64 = tally.by_class.iter().filter(|(c, st, _)| *c == class && *st == DiscrepancyStatus::Open).map(|(_, _, n)| n).sum();
        let _ = writeln!(out, "switchyard_recon_open_discrepancies{{class=\"{}\"}} {n}", class.as_str());
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_recon_timers Payouts waiting on a settlement window or deadline.\n# TYPE switchyard_recon_timers gauge\nswitchyard_recon_timers {timers}"
    );
    admin.flows.render(&mut out);
    Ok(out)
}
