//! `/metrics` (contract: Metrics): every series from the first scrape, with its help text, and
//! the send counters by source and result.

use crate::common::im;
use crate::common::{db, metric_value};
use serde_json::json;

/// Every series a broker exports, present (with `# HELP`) before anything happened.
const SERIES: [&str; 37] = [
    "broker_connections",
    "broker_connections_total",
    "broker_frames_in_total",
    "broker_frames_out_total",
    "broker_heartbeats_out_total",
    "broker_deliveries_total",
    "broker_slow_consumer_cuts_total",
    "broker_unacked_cuts_total",
    "broker_auth_failures_total",
    "broker_connections_refused_total",
    "broker_connections_refused_per_ip_total",
    "broker_messages_purged_total",
    "broker_store_batch_messages",
    "broker_store_batch_seconds",
    "broker_store_batch_failures_total",
    "broker_push_sent_total",
    "broker_push_failed_total",
    "broker_push_dropped_total",
    "broker_push_latency_seconds",
    "broker_users_online",
    "broker_store_writer_queued",
    "broker_db_connections",
    "broker_db_connection_waits_total",
    "broker_db_connection_timeouts_total",
    "broker_relay_connected",
    "broker_relay_publish_seconds",
    "broker_redis_seconds",
    "broker_notifications_queue_messages",
    "broker_sessions",
    "broker_sends_total",
    "broker_stomp_errors_total",
    "broker_http_connections",
    "broker_http_connections_refused_total",
    "broker_rate_limit_fallbacks_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_cpu_seconds_total",
];

#[tokio::test]
async fn every_series_is_there_from_the_first_scrape_with_its_help() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    let text = broker.metrics().await;
    for name in SERIES {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no help for {name}"
        );
        let sampled = text.lines().any(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
        });
        assert!(sampled, "no sample of {name}");
    }
    // Latencies are histograms (buckets add up across nodes), not summaries.
    assert!(text.contains("# TYPE broker_push_latency_seconds histogram"));
    assert!(text.contains("broker_push_latency_seconds_bucket{le=\"0.005\"}"));
    // Every source and result is there at zero: 3 sources, ok and each error code.
    let sends = text
        .lines()
        .filter(|line| line.starts_with("broker_sends_total{"))
        .count();
    assert_eq!(sends, 3 * 22, "{text}");
}

#[tokio::test]
async fn sends_are_counted_by_source_and_result() {
    let database = db::sqlite();
    let broker = im::broker(&database.url, &[]).await;
    let ok = "broker_sends_total{source=\"rest\",result=\"ok\"}";
    let refused = "broker_sends_total{source=\"rest\",result=\"INVALID_ARGUMENT\"}";
    let stomp_ok = "broker_sends_total{source=\"stomp\",result=\"ok\"}";
    let before = broker.metrics().await;
    let value = |text: &str, series: &str| metric_value(text, series).unwrap_or(0.0);
    let (status, _) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"to": "bob", "clientMsgId": "m1", "content": "hi"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = broker
        .api(
            "POST",
            "/api/v1/messages",
            "alice",
            Some(json!({"to": "bob", "clientMsgId": "m2", "content": ""})),
        )
        .await;
    assert_eq!(status, 400);
    let mut alice = broker.im_user("alice").await;
    let websocket = "broker_sessions{transport=\"websocket\"}";
    assert!(value(&broker.metrics().await, websocket) >= 1.0);
    im::private_send(&mut alice, "bob", "m3", "over stomp", "r").await;
    im::receipt(&mut alice, "r").await;
    let after = broker.metrics().await;
    // Other tests share the process's counters: at least ours were counted.
    assert!(value(&after, ok) >= value(&before, ok) + 1.0);
    assert!(value(&after, refused) >= value(&before, refused) + 1.0);
    assert!(value(&after, stomp_ok) >= value(&before, stomp_ok) + 1.0);
    assert!(value(&after, "broker_push_latency_seconds_count") >= 1.0);
}
