//! Unit tests of the steady-rate bench's pure parts.

use super::*;

#[test]
fn nearest_rank_percentiles() {
    let samples: Vec<u32> = (1..=100).collect();
    assert_eq!(percentile(&samples, 50.0), Some(50));
    assert_eq!(percentile(&samples, 95.0), Some(95));
    assert_eq!(percentile(&samples, 99.0), Some(99));
    assert_eq!(percentile(&samples, 100.0), Some(100));
    assert_eq!(percentile(&samples, 0.0), Some(1));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    assert_eq!(percentile(&[], 50.0), None);
    // 1,000 samples: p99 is the 990th.
    let samples: Vec<u32> = (1..=1000).collect();
    assert_eq!(percentile(&samples, 99.0), Some(990));
}

#[test]
fn histogram_percentiles_are_bucket_upper_edges() {
    let mut h = LatencyHistogram::new();
    assert_eq!(h.percentile(99.0), None);
    for us in 1..=1000u64 {
        h.record(us * 10 - 5); // 5, 15, ..., 9995 us: one per 10 us bucket
    }
    assert_eq!(h.percentile(50.0), Some(5_000));
    assert_eq!(h.percentile(99.0), Some(9_900));
    let mut h = LatencyHistogram::new();
    h.record(150_500); // coarse range: 150-151 ms
    assert_eq!(h.percentile(50.0), Some(151_000));
    h.record(u64::MAX);
    assert_eq!(h.percentile(100.0), Some(COARSE_LIMIT_US));
    assert_eq!(LatencyHistogram::bucket(FINE_LIMIT_US - 1), FINE_BUCKETS - 1);
    assert_eq!(LatencyHistogram::bucket(FINE_LIMIT_US), FINE_BUCKETS);
}

#[test]
fn rss_flatness_is_judged_after_the_settle_minutes() {
    assert!(rss_growth(&[50_000; 5], 5).is_none(), "no minute after the fifth");
    let g = rss_growth(&[40_000, 48_000, 50_000, 50_000, 50_000, 51_000, 54_000, 52_000], 5).expect("judged");
    assert_eq!((g.baseline_kib, g.max_after_kib), (50_000, 54_000));
    assert!((g.growth - 0.08).abs() < 1e-9);
    let g = rss_growth(&[50_000, 50_000, 50_000, 50_000, 50_000, 56_000], 5).expect("judged");
    assert!(g.growth >= RSS_MAX_GROWTH);
}

#[test]
fn postgres_processes_of_other_databases_are_not_counted() {
    let db = Some("switchyard_bench");
    assert!(serves_database("postgres: postgres switchyard_bench 127.0.0.1(51234) idle ", db));
    assert!(serves_database("postgres: postgres switchyard_bench [local] UPDATE ", db));
    assert!(!serves_database("postgres: postgres test 127.0.0.1(51236) idle ", db));
    assert!(serves_database("postgres: walwriter ", db));
    assert!(serves_database("postgres: 15/main: postgres switchyard_bench 127.0.0.1(44550) idle", db));
    assert!(!serves_database("postgres: 15/main: postgres test 127.0.0.1(44550) idle", db));
    assert!(serves_database("postgres: 15/main: logical replication launcher ", db));
    assert!(serves_database("postgres: logical replication launcher ", db));
    assert!(serves_database("/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main ", db));
    assert!(serves_database("postgres: postgres test 127.0.0.1(51236) idle ", None));
    assert_eq!(database_name("postgres://postgres@127.0.0.1:5432/switchyard_bench").as_deref(), Some("switchyard_bench"));
    assert_eq!(database_name("postgres://u:p@db/x?sslmode=disable").as_deref(), Some("x"));
    assert_eq!(database_name("postgres://db"), None);
}

#[test]
fn targets_by_rate() {
    assert_eq!(p99_target_ms(200), Some(10));
    assert_eq!(p99_target_ms(1000), Some(10));
    assert_eq!(p99_target_ms(5000), Some(50));
    assert_eq!(p99_target_ms(8000), None);
}

#[test]
fn pacing_and_ids() {
    assert_eq!(due_count(Duration::from_millis(1500), 1000), 1500);
    assert_eq!(due_count(Duration::from_millis(1), 200), 0);
    assert_eq!(due_count(Duration::from_millis(5), 200), 1);
    assert_eq!(payout_index("a1b2c3-st-41"), Some(41));
    assert_eq!(payout_index("a1b2c3-st-warm"), None);
    assert_eq!(payout_index("other"), None);
}

#[test]
fn metric_totals_sum_label_sets() {
    let text = "# HELP switchyard_vendor_call_duration_seconds Vendor call latency\n\
                switchyard_vendor_call_duration_seconds_sum{domain=\"payouts\",provider=\"stripe\",operation=\"create\",result=\"ok\"} 1.5\n\
                switchyard_vendor_call_duration_seconds_count{domain=\"payouts\",provider=\"stripe\",operation=\"create\",result=\"ok\"} 300\n\
                switchyard_vendor_call_duration_seconds_sum{domain=\"payouts\",provider=\"stripe\",operation=\"find\",result=\"ok\"} 0.5\n\
                switchyard_vendor_call_duration_seconds_sum_other 9\n\
                # EOF\n";
    assert!((metric_total(text, "switchyard_vendor_call_duration_seconds_sum") - 2.0).abs() < 1e-9);
    assert!((metric_total(text, "switchyard_vendor_call_duration_seconds_count") - 300.0).abs() < 1e-9);
    assert_eq!(metric_total(text, "switchyard_missing"), 0.0);
}
