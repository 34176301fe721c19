//! The Prometheus endpoint. Actors count in [`PipelineStats`] (and record
//! histograms straight into the `metrics` recorder); [`publish`] copies the
//! counters into the recorder, so the endpoint always agrees with
//! `upcall-show`.

use std::net::SocketAddr;
use std::sync::Arc;

use actors::stats::{DropReason, PipelineStats, ACTORS};
use messages::dpif::Dpif;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::dpif_netdev::conntrack::Conntrack;

/// Histogram buckets: batch sizes (ops), and durations (seconds).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 50.0, 64.0, 128.0];
const SECONDS_BUCKETS: &[f64] = &[
    1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 2.0,
];

/// Starts the HTTP listener serving `/metrics` on `addr`.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("batch_size".into()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), SECONDS_BUCKETS)?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics endpoint on {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "upcalld_upcalls_received_total",
        "Upcalls read from the datapath"
    );
    describe_counter!(
        "upcalld_upcalls_handled_total",
        "Upcalls translated by handlers"
    );
    describe_counter!(
        "upcalld_upcalls_dropped_total",
        "Upcalls not installed, by reason"
    );
    describe_counter!(
        "upcalld_duplicate_upcalls_total",
        "Upcalls whose megaflow was already installed"
    );
    describe_counter!(
        "upcalld_ukeys_missing_total",
        "Ukeys dropped because dumps no longer showed their flows"
    );
    describe_counter!(
        "upcalld_packet_ins_total",
        "Packet-ins per connection: sent at once (bypassed), held by the rate limit (queued), dropped by it (rate_dropped) or by a full connection queue (queue_full)"
    );
    describe_counter!("upcalld_flow_puts_total", "Megaflows installed");
    describe_counter!(
        "upcalld_flow_modifies_total",
        "Megaflows whose actions were changed"
    );
    describe_counter!("upcalld_flow_deletes_total", "Megaflows deleted");
    describe_counter!(
        "upcalld_dpif_op_errors_total",
        "Datapath operations refused"
    );
    describe_counter!(
        "upcalld_actor_restarts_total",
        "Actor restarts after a panic, by actor"
    );
    describe_counter!(
        "upcalld_datapath_packets_total",
        "Datapath packets, by result (hit, missed, lost)"
    );
    describe_counter!(
        "upcalld_datapath_backend_total",
        "The datapath backend's own counters (kernel: sendmsg_calls, ops, recvmsg_calls, upcall_overruns, upcall_recv_calls, upcall_waits, upcalls_truncated, bad_upcalls, bad_flows)"
    );
    describe_counter!(
        "upcalld_rules_learned_total",
        "Rules added by learn actions"
    );
    describe_counter!(
        "upcalld_learn_over_limit_total",
        "Learned rules refused by the learn's limit"
    );
    describe_counter!(
        "upcalld_rules_expired_total",
        "Rules removed by their idle or hard timeout"
    );
    describe_gauge!("upcalld_datapath_flows", "Megaflows in the datapath");
    describe_counter!(
        "upcalld_port_packets_total",
        "Packets per port, by direction (rx, tx)"
    );
    describe_counter!(
        "upcalld_port_bytes_total",
        "Bytes per port, by direction (rx, tx)"
    );
    describe_counter!(
        "upcalld_port_dropped_total",
        "Packets lost at a port, by direction (rx: before the datapath saw them)"
    );
    describe_counter!("upcalld_port_errors_total", "Port errors, by direction");
    describe_gauge!("upcalld_flow_limit", "The dynamic flow limit");
    describe_gauge!("upcalld_rules_version", "The rule-table's version");
    describe_gauge!(
        "upcalld_dump_duration_seconds_last",
        "CPU time of the last revalidation round"
    );
    describe_gauge!(
        "upcalld_conntrack_connections",
        "Connections tracked by the userspace datapath"
    );
    describe_counter!(
        "upcalld_conntrack_packets_total",
        "Conntrack packets of note, by what happened (untrackable, invalid, full, nat_exhausted)"
    );
    describe_counter!(
        "upcalld_conntrack_connections_total",
        "Connections committed and expired"
    );
    describe_counter!(
        "upcalld_tunnel_drops_total",
        "Tunnel packets dropped by a vport, by reason (rx_malformed, rx_unknown_critical_option, tx_no_remote, tx_unreachable)"
    );
    describe_histogram!("upcalld_dpif_batch_size", "Ops per datapath batch");
    describe_histogram!(
        "upcalld_upcall_latency_seconds",
        "From reading an upcall batch to its translation"
    );
    describe_histogram!(
        "upcalld_revalidation_seconds",
        "Duration of revalidation rounds"
    );
}

/// Copies the current counters into the metrics recorder.
pub fn publish(stats: &PipelineStats, dpif: &dyn Dpif) {
    let g = PipelineStats::get;
    counter!("upcalld_upcalls_received_total").absolute(g(&stats.upcalls_received));
    counter!("upcalld_upcalls_handled_total").absolute(g(&stats.upcalls_handled));
    for why in DropReason::ALL {
        counter!("upcalld_upcalls_dropped_total", "reason" => why.name())
            .absolute(stats.dropped(why));
    }
    counter!("upcalld_duplicate_upcalls_total").absolute(g(&stats.duplicate_upcalls));
    counter!("upcalld_ukeys_missing_total").absolute(g(&stats.ukeys_missing));
    counter!("upcalld_flow_puts_total").absolute(g(&stats.flow_puts));
    counter!("upcalld_flow_modifies_total").absolute(g(&stats.flow_modifies));
    counter!("upcalld_flow_deletes_total").absolute(g(&stats.flow_deletes));
    counter!("upcalld_dpif_op_errors_total").absolute(g(&stats.op_errors));
    for actor in ACTORS {
        counter!("upcalld_actor_restarts_total", "actor" => actor).absolute(stats.restarts(actor));
    }
    let p = &stats.packet_ins;
    for (result, n) in [
        ("bypassed", &p.bypassed),
        ("queued", &p.queued),
        ("rate_dropped", &p.rate_dropped),
        ("queue_full", &p.queue_full),
    ] {
        counter!("upcalld_packet_ins_total", "result" => result).absolute(g(n));
    }
    counter!("upcalld_rules_learned_total").absolute(g(&stats.rules_learned));
    counter!("upcalld_learn_over_limit_total").absolute(g(&stats.learn_over_limit));
    counter!("upcalld_rules_expired_total").absolute(g(&stats.rules_expired));
    let dp = dpif.stats();
    counter!("upcalld_datapath_packets_total", "result" => "hit").absolute(dp.n_hit);
    counter!("upcalld_datapath_packets_total", "result" => "missed").absolute(dp.n_missed);
    counter!("upcalld_datapath_packets_total", "result" => "lost").absolute(dp.n_lost);
    gauge!("upcalld_datapath_flows").set(dp.n_flows as f64);
    for (what, n) in dpif.backend_counters() {
        counter!("upcalld_datapath_backend_total", "what" => what).absolute(n);
    }
    for p in dpif.port_stats() {
        let port = p.number.to_string();
        for (dir, packets, bytes, dropped, errors) in [
            ("rx", p.rx_packets, p.rx_bytes, p.rx_dropped, p.rx_errors),
            ("tx", p.tx_packets, p.tx_bytes, p.tx_dropped, p.tx_errors),
        ] {
            let labels = [
                ("port", port.clone()),
                ("name", p.name.clone()),
                ("direction", dir.to_string()),
            ];
            counter!("upcalld_port_packets_total", &labels).absolute(packets);
            counter!("upcalld_port_bytes_total", &labels).absolute(bytes);
            counter!("upcalld_port_dropped_total", &labels).absolute(dropped);
            counter!("upcalld_port_errors_total", &labels).absolute(errors);
        }
    }
    gauge!("upcalld_flow_limit").set(g(&stats.flow_limit) as f64);
    gauge!("upcalld_rules_version").set(g(&stats.rules_version) as f64);
    gauge!("upcalld_dump_duration_seconds_last").set(g(&stats.dump_duration_ms) as f64 / 1000.0);
}

/// Copies the userspace datapath's conntrack counters into the recorder.
pub fn publish_conntrack(ct: &Conntrack) {
    let c = &ct.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    gauge!("upcalld_conntrack_connections").set(ct.len() as f64);
    for (what, n) in [
        ("untrackable", &c.untrackable),
        ("invalid", &c.invalid),
        ("full", &c.full),
        ("nat_exhausted", &c.nat_exhausted),
    ] {
        counter!("upcalld_conntrack_packets_total", "what" => what).absolute(get(n));
    }
    counter!("upcalld_conntrack_connections_total", "event" => "committed")
        .absolute(get(&c.created));
    counter!("upcalld_conntrack_connections_total", "event" => "expired").absolute(get(&c.expired));
}

/// Copies the userspace datapath's tunnel vport drop counters into the
/// recorder.
pub fn publish_tunnels(netdev: &crate::dpif_netdev::Netdev) {
    for (port, counts) in netdev.tunnel_drops() {
        for (why, n) in counts {
            counter!("upcalld_tunnel_drops_total", "port" => port.clone(), "reason" => why)
                .absolute(n);
        }
    }
}

/// [`publish_conntrack`] every `period` until the process ends.
pub async fn publish_conntrack_forever(ct: Arc<Conntrack>, period: std::time::Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        publish_conntrack(&ct);
    }
}

/// Publishes every `period` until the process ends (run on the actix
/// system's runtime).
pub async fn publish_forever(
    stats: Arc<PipelineStats>,
    dpif: Arc<dyn Dpif>,
    period: std::time::Duration,
) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        publish(&stats, dpif.as_ref());
    }
}
