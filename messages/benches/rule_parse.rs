//! Parses 100 000 rules of the shapes the oracle corpus uses (matches on
//! ports, MACs, IPv4/IPv6 prefixes, VLANs, registers; a few actions each)
//! and prints how long it took. Run with `cargo bench -p upcalld-messages`.

use std::time::Instant;

use messages::format::ofp_rule::format_rule;
use messages::parse::rules::parse_rules;

const N: usize = 100_000;

fn rules_text() -> String {
    let shapes = [
        "table=0,priority={p},in_port={port},tcp,nw_dst=10.{a}.{b}.0/24,tp_dst={tp},actions=mod_dl_src:02:00:00:00:{a:02x}:{b:02x},output:{port}",
        "table=0,priority={p},ip,nw_src=172.{a}.{b}.7,nw_dst=192.168.{b}.0/28,actions=set_field:{a}->reg0,goto_table:1",
        "table=1,priority={p},dl_vlan={vid},dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=mod_vlan_vid:{tp},output:2,resubmit(,2)",
        "table=1,priority={p},ipv6,ipv6_dst=2001:db8:{a:x}:{b:x}::/64,reg0=0x{b:x}/0xf,actions=dec_ttl,output:{port}",
        "table=2,priority={p},arp,arp_op=1,arp_tpa=10.{a}.{b}.1,actions=load:{a}->NXM_NX_REG1[0..7],output:IN_PORT",
        "table=2,priority={p},tcp6,tcp_flags=+syn-ack,tp_src=0x{tp:x}/0xff00,actions=set_field:2001:db8::{a:x}->ipv6_src,output:3",
    ];
    let mut text = String::new();
    for i in 0..N {
        let (a, b) = (i % 251, (i / 251) % 253);
        let line = shapes[i % shapes.len()]
            .replace("{p}", &(i % 60000).to_string())
            .replace("{port}", &(1 + i % 8).to_string())
            .replace("{tp}", &(1 + i % 4000).to_string())
            .replace("{vid}", &(1 + i % 4094).to_string())
            .replace("{a:02x}", &format!("{a:02x}"))
            .replace("{b:02x}", &format!("{b:02x}"))
            .replace("{a:x}", &format!("{a:x}"))
            .replace("{b:x}", &format!("{b:x}"))
            .replace("{tp:x}", &format!("{:x}", 1 + i % 4000))
            .replace("{a}", &a.to_string())
            .replace("{b}", &b.to_string());
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn main() {
    let text = rules_text();
    let start = Instant::now();
    let rules = parse_rules(&text).expect("benchmark rules parse");
    let parsed = start.elapsed();
    let start = Instant::now();
    let printed: usize = rules.iter().map(|r| format_rule(r).len()).sum();
    let formatted = start.elapsed();
    println!(
        "rule_parse: {} rules ({} bytes) parsed in {:.1} ms ({:.2} us/rule); printed {} bytes in {:.1} ms",
        rules.len(),
        text.len(),
        parsed.as_secs_f64() * 1e3,
        parsed.as_secs_f64() * 1e6 / rules.len() as f64,
        printed,
        formatted.as_secs_f64() * 1e3
    );
}
