//! Tables for people; `--json` prints the same structs with serde instead.

use crate::dlq::{DlqMessage, DlqSummary, ReplayAction, ReplayReport};
use crate::table::{age, utc, Cell, Style, Table};
use crate::trace::Trace;

fn opt_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), utc)
}

fn ago(ms: Option<i64>, now: i64) -> String {
    ms.map_or_else(|| "-".to_owned(), |t| age(now - t))
}

pub fn dlq_list(summaries: &[DlqSummary], now: i64) -> Table {
    let mut t = Table::new(["topic", "depth", "replayed", "pending", "oldest", "newest", "top reason"]);
    for s in summaries {
        if !s.exists {
            t.row(vec![s.topic.clone().into(), Cell::styled("not on the broker", Style::Dim)]);
            continue;
        }
        let pending = s.depth.saturating_sub(s.replayed);
        let pending_style = if pending > 0 { Style::Bad } else { Style::Good };
        t.row(vec![
            s.topic.clone().into(),
            s.depth.to_string().into(),
            s.replayed.to_string().into(),
            Cell::styled(pending.to_string(), pending_style),
            ago(s.oldest_failed_at_ms, now).into(),
            ago(s.newest_failed_at_ms, now).into(),
            s.top_reason.as_ref().map_or_else(|| "-".to_owned(), |(r, n)| format!("{n}x {r}")).into(),
        ]);
    }
    t
}

pub fn dlq_messages(messages: &[DlqMessage], now: i64) -> Table {
    let mut t = Table::new(["partition", "offset", "key", "failed", "age", "class", "retries", "source", "replay", "reason"]);
    for m in messages {
        let source = match (&m.source_topic, m.source_partition, m.source_offset) {
            (Some(topic), Some(p), Some(o)) => format!("{topic}[{p}]@{o}"),
            (Some(topic), _, _) => topic.clone(),
            _ => "-".into(),
        };
        t.row(vec![
            m.partition.to_string().into(),
            m.offset.to_string().into(),
            m.key.clone().into(),
            opt_time(m.failed_at_ms).into(),
            ago(m.failed_at_ms, now).into(),
            Cell::styled(m.error_class.clone().unwrap_or_else(|| "-".into()), Style::Warn),
            m.retry_attempts.map_or_else(|| "-".to_owned(), |n| n.to_string()).into(),
            source.into(),
            match &m.replay_state {
                Some(s) => Cell::styled(s.clone(), Style::Good),
                None => Cell::styled("-", Style::Dim),
            },
            m.reason.clone().unwrap_or_else(|| "-".into()).into(),
        ]);
    }
    t
}

/// Every header of each message, for `dlq show --headers`.
pub fn dlq_headers(messages: &[DlqMessage]) -> Table {
    let mut t = Table::new(["partition", "offset", "header", "value"]);
    for m in messages {
        for (k, v) in &m.headers {
            let style = if k.starts_with("dlq-") { Style::Warn } else { Style::Plain };
            t.row(vec![m.partition.to_string().into(), m.offset.to_string().into(), Cell::styled(k.clone(), style), v.clone().into()]);
        }
    }
    t
}

pub fn replay(report: &ReplayReport) -> Table {
    let mut t = Table::new(["partition", "offset", "key", "action", "to", "reason"]);
    for item in &report.items {
        let (action, to) = match &item.action {
            ReplayAction::Replayed { target, partition, offset } => (Cell::styled("replayed", Style::Good), format!("{target}[{partition}]@{offset}")),
            ReplayAction::WouldReplay { target } => (Cell::styled("would replay", Style::Warn), target.clone()),
            ReplayAction::AlreadyReplayed { state } => (Cell::styled(format!("skipped ({state})"), Style::Dim), "-".into()),
            ReplayAction::Unroutable { why } => (Cell::styled("unroutable", Style::Bad), why.clone()),
            ReplayAction::Failed { error } => (Cell::styled("failed", Style::Bad), error.clone()),
        };
        let m = &item.message;
        t.row(vec![
            m.partition.to_string().into(),
            m.offset.to_string().into(),
            m.key.clone().into(),
            action,
            to.into(),
            m.reason.clone().unwrap_or_else(|| "-".into()).into(),
        ]);
    }
    t
}

pub fn trace(trace: &Trace) -> Table {
    let mut t = Table::new(["time (UTC)", "source", "event", "status", "detail"]);
    for e in &trace.events {
        let style = if e.failed { Style::Bad } else { Style::Plain };
        t.row(vec![
            Cell::styled(opt_time(e.at_ms), Style::Dim),
            e.source.clone().into(),
            Cell::styled(e.what.clone(), style),
            Cell::styled(e.status.clone().unwrap_or_else(|| "-".into()), style),
            e.detail.clone().into(),
        ]);
    }
    t
}
