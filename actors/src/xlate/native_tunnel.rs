//! OVS's native (userspace) tunnelling in translation: an output to a
//! tunnel port becomes `tnl_push(...)` of a whole outer header, routed and
//! resolved here (OVS's `native_tunnel_output`), and the encapsulated
//! packet goes on through the bridge from its `LOCAL` port, where the
//! underlay address lives; a tunnel packet output to `LOCAL` becomes
//! `tnl_pop(vport)` (OVS's `terminate_native_tunnel`), and ARP replies to
//! the underlay address feed the neighbour cache (`tnl_neigh_snoop`).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use messages::dpif::{Execute, PacketMetadata};
use messages::flow::*;
use messages::native_tunnel::{
    arp_request, build_header, route_lookup, tnl_port_lookup, Route, TnlEndpoint, TnlPush, Underlay,
};
use messages::odp::OdpAction;
use messages::ofp::port;
use messages::tunnel::TunnelConfig;

use super::{Ctx, XlateConfig};
use crate::tables::Tables;

const ARP_OP_REPLY: u8 = 2;

/// An unresolved next hop is asked for again after this long (OVS asks on
/// every translation that misses; a megaflow keeps misses from repeating
/// per packet, revalidation repeats them per round, and this spaces the
/// requests as the kernel's ARP retransmissions are spaced).
const REQUEST_INTERVAL_MS: u64 = 1000;
/// A next hop no translation has missed for this long is no longer asked
/// for (its flows are gone, or found another way).
const RESOLVE_GIVE_UP_MS: u64 = 5000;

/// A next hop whose MAC is wanted.
#[derive(Debug, Clone, Copy)]
struct Resolving {
    /// The underlay address the request comes from.
    src: Ipv4Addr,
    /// When a translation last missed it.
    missed_ms: u64,
    /// When a request was last sent (`None`: not yet).
    sent_ms: Option<u64>,
}

/// OVS's default neighbour aging (`NEIGH_ENTRY_DEFAULT_IDLE_TIME_MS`).
pub const DEFAULT_NEIGHBOUR_AGING_MS: u64 = 15 * 60 * 1000;
/// The longest aging `tnl/neigh/aging` takes, in seconds.
const MAX_NEIGHBOUR_AGING_S: u64 = 3600;

/// The underlay of a bridge that tunnels natively: its addresses and
/// routes, and the neighbour cache (OVS's `tnl-neigh-cache`).
#[derive(Debug)]
pub struct NativeTunnel {
    /// The addresses and MAC of the underlay port (its `routes` are the
    /// configured ones this started with; [`NativeTunnel::routes`] holds
    /// those in force).
    pub underlay: Underlay,
    /// The OpenFlow port that holds the underlay address (`None`: `LOCAL`).
    pub port: Option<u32>,
    /// Routes added by configuration or `ovs/route/add` (OVS's "User"
    /// routes).
    routes: RwLock<Vec<Route>>,
    /// Routes read from the host's main table (OVS's "Cached" routes of
    /// route-table.c), through the underlay port's device.
    host_routes: RwLock<Vec<Route>>,
    neighbours: RwLock<HashMap<Ipv4Addr, Neighbour>>,
    /// How long a neighbour lives unused (OVS's `tnl/neigh/aging`).
    aging_ms: AtomicU64,
    /// Next hops missed and not learned yet, to send ARP requests for.
    resolving: Mutex<HashMap<Ipv4Addr, Resolving>>,
    /// Bumped when a neighbour or route is added, changes or goes:
    /// installed flows re-translate (OVS's `tnl_conf_seq`).
    generation: AtomicU64,
    pub counters: NativeTunnelCounters,
}

/// A neighbour cache entry.
#[derive(Debug)]
struct Neighbour {
    mac: [u8; 6],
    /// When it expires unless used (ms of `CLOCK_MONOTONIC`); `u64::MAX`:
    /// configured, never.
    expires_ms: AtomicU64,
}

/// What native tunnelling counts (translations with side effects only:
/// upcalls, not traces or revalidation).
#[derive(Debug, Default)]
pub struct NativeTunnelCounters {
    /// Tunnel outputs with no route to the remote (dropped).
    pub no_route: AtomicU64,
    /// Tunnel outputs whose next hop's MAC is unknown (dropped; the flow
    /// translates again when a neighbour is learned).
    pub neighbour_miss: AtomicU64,
    /// Neighbours learned from ARP replies and received tunnel packets.
    pub neighbours_learned: AtomicU64,
    /// ARP requests sent for next hops missed (OVS's
    /// `tnl_send_arp_request`).
    pub arp_requests: AtomicU64,
    /// Neighbours that aged out.
    pub neighbours_expired: AtomicU64,
}

impl NativeTunnel {
    /// An underlay with configured neighbours, which never age.
    pub fn new(
        underlay: Underlay,
        port: Option<u32>,
        neighbours: &[(Ipv4Addr, [u8; 6])],
    ) -> NativeTunnel {
        let permanent = neighbours.iter().map(|&(ip, mac)| {
            (
                ip,
                Neighbour {
                    mac,
                    expires_ms: AtomicU64::new(u64::MAX),
                },
            )
        });
        NativeTunnel {
            routes: RwLock::new(underlay.routes.clone()),
            host_routes: RwLock::default(),
            underlay,
            port,
            neighbours: RwLock::new(permanent.collect()),
            aging_ms: AtomicU64::new(DEFAULT_NEIGHBOUR_AGING_MS),
            resolving: Mutex::default(),
            generation: AtomicU64::new(0),
            counters: NativeTunnelCounters::default(),
        }
    }

    /// OVS's `ovs_router_lookup`: the next hop and source address for `dst`.
    pub fn route(&self, dst: Ipv4Addr) -> Option<(Ipv4Addr, Ipv4Addr)> {
        route_lookup(
            &self.underlay.addresses,
            &self.routes.read(),
            &self.host_routes.read(),
            dst,
        )
    }

    /// The routes added, as `ovs-appctl ovs/route/show` lists them.
    pub fn routes(&self) -> Vec<Route> {
        self.routes.read().clone()
    }

    /// The routes read from the host.
    pub fn host_routes(&self) -> Vec<Route> {
        self.host_routes.read().clone()
    }

    /// A route of the host's table through the underlay device appeared
    /// (`add`) or went (OVS's `route_table_handle_msg`); one without a
    /// source address here is not taken, as OVS takes none.
    pub fn host_route(&self, add: bool, prefix: Ipv4Addr, plen: u8, gateway: Option<Ipv4Addr>) {
        let prefix = masked(prefix, plen);
        let mut routes = self.host_routes.write();
        let before = routes.clone();
        routes.retain(|r| !(r.prefix == prefix && r.plen == plen));
        let src = self
            .underlay
            .on_link_source(prefix)
            .or_else(|| gateway.and_then(|g| self.underlay.on_link_source(g)));
        if let Some(src) = src.filter(|_| add) {
            routes.push(Route {
                prefix,
                plen,
                gateway,
                src,
            });
        }
        let changed = *routes != before;
        drop(routes);
        if changed {
            self.changed();
        }
    }

    /// `ovs/route/add`: adds (or replaces) a route to `prefix/plen`,
    /// through `gateway` if given; its source is the underlay address
    /// whose subnet holds the destination, else the gateway (OVS's
    /// `ovs_router_get_netdev_source_address`).
    pub fn add_route(
        &self,
        prefix: Ipv4Addr,
        plen: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), &'static str> {
        let src = self
            .underlay
            .on_link_source(prefix)
            .or_else(|| gateway.and_then(|g| self.underlay.on_link_source(g)))
            .ok_or("Error while inserting route.")?;
        let route = Route {
            prefix: masked(prefix, plen),
            plen,
            gateway,
            src,
        };
        let mut routes = self.routes.write();
        routes.retain(|r| !(r.prefix == route.prefix && r.plen == plen));
        routes.push(route);
        drop(routes);
        self.changed();
        Ok(())
    }

    /// `ovs/route/del`: removes the route to exactly `prefix/plen`.
    pub fn del_route(&self, prefix: Ipv4Addr, plen: u8) -> Result<(), &'static str> {
        let prefix = masked(prefix, plen);
        let mut routes = self.routes.write();
        let before = routes.len();
        routes.retain(|r| !(r.prefix == prefix && r.plen == plen));
        if routes.len() == before {
            return Err("Not found");
        }
        drop(routes);
        self.changed();
        Ok(())
    }

    /// The neighbour's MAC, if known and not expired; a lookup keeps it
    /// alive (OVS's `tnl_neigh_lookup`).
    pub fn neighbour(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.neighbour_at(ip, messages::dpif::monotonic_ms())
    }

    fn neighbour_at(&self, ip: Ipv4Addr, now_ms: u64) -> Option<[u8; 6]> {
        let neighbours = self.neighbours.read();
        let n = neighbours.get(&ip)?;
        let expires = n.expires_ms.load(Ordering::Relaxed);
        if expires <= now_ms {
            return None;
        }
        if expires != u64::MAX {
            n.expires_ms.store(
                now_ms + self.aging_ms.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        Some(n.mac)
    }

    /// Learns (or refreshes) a neighbour; a change makes flows re-translate.
    pub fn learn(&self, ip: Ipv4Addr, mac: [u8; 6]) {
        if mac == [0; 6] {
            return;
        }
        if self.set(ip, mac) {
            self.counters
                .neighbours_learned
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// OVS's `tnl_neigh_set` (and `tnl/neigh/set`): the entry lives the
    /// aging time from now; true when it is new or its MAC changed.
    pub fn set(&self, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        let now = messages::dpif::monotonic_ms();
        if self.neighbour_at(ip, now) == Some(mac) {
            return false;
        }
        let expires = now + self.aging_ms.load(Ordering::Relaxed);
        self.neighbours.write().insert(
            ip,
            Neighbour {
                mac,
                expires_ms: AtomicU64::new(expires),
            },
        );
        self.resolving.lock().remove(&ip);
        self.changed();
        true
    }

    /// Keeps alive the neighbours with `mac`, which installed flows push
    /// headers to (OVS's translation cache refreshes the neighbours of
    /// flows with traffic at each statistics push).
    pub fn used(&self, mac: [u8; 6], now_ms: u64) {
        let aging = self.aging_ms.load(Ordering::Relaxed);
        for n in self.neighbours.read().values() {
            let e = n.expires_ms.load(Ordering::Relaxed);
            if n.mac == mac && e != u64::MAX && e > now_ms {
                n.expires_ms.store(now_ms + aging, Ordering::Relaxed);
            }
        }
    }

    /// OVS's `tnl_neigh_cache_run`: removes the neighbours that expired.
    pub fn expire(&self, now_ms: u64) {
        let mut neighbours = self.neighbours.write();
        let before = neighbours.len();
        neighbours.retain(|_, n| n.expires_ms.load(Ordering::Relaxed) > now_ms);
        let gone = before - neighbours.len();
        drop(neighbours);
        if gone > 0 {
            self.counters
                .neighbours_expired
                .fetch_add(gone as u64, Ordering::Relaxed);
            self.changed();
        }
    }

    /// `tnl/neigh/flush`: forgets every neighbour, configured ones too.
    pub fn flush(&self) {
        let mut neighbours = self.neighbours.write();
        let any = !neighbours.is_empty();
        neighbours.clear();
        drop(neighbours);
        if any {
            self.changed();
        }
    }

    /// The aging time, in seconds (`tnl/neigh/aging`).
    pub fn aging_s(&self) -> u64 {
        self.aging_ms.load(Ordering::Relaxed) / 1000
    }

    /// `tnl/neigh/aging SECS`: 1 to 3600; entries expiring later than
    /// the new time from now expire then.
    pub fn set_aging_s(&self, secs: u64) -> Result<(), &'static str> {
        if secs == 0 || secs > MAX_NEIGHBOUR_AGING_S {
            return Err("bad aging value");
        }
        let aging = secs * 1000;
        self.aging_ms.store(aging, Ordering::Relaxed);
        let new_expiry = messages::dpif::monotonic_ms() + aging;
        for n in self.neighbours.read().values() {
            let e = n.expires_ms.load(Ordering::Relaxed);
            if new_expiry < e && e != u64::MAX {
                n.expires_ms.store(new_expiry, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever the neighbour cache or the routes do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The neighbours, sorted, as `ovs-appctl tnl/neigh/show` lists them,
    /// each with whether it has expired (and waits to be removed).
    pub fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6], bool)> {
        let now = messages::dpif::monotonic_ms();
        let mut v: Vec<_> = self
            .neighbours
            .read()
            .iter()
            .map(|(a, n)| (*a, n.mac, n.expires_ms.load(Ordering::Relaxed) <= now))
            .collect();
        v.sort();
        v
    }
}

fn masked(a: Ipv4Addr, plen: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    Ipv4Addr::from(u32::from(a) & mask)
}

impl NativeTunnel {
    /// Notes a next hop a translation found no MAC for: it is asked for
    /// (see [`NativeTunnel::solicitations`]).
    fn missed(&self, next_hop: Ipv4Addr, src: Ipv4Addr, now_ms: u64) {
        self.resolving
            .lock()
            .entry(next_hop)
            .and_modify(|r| {
                r.src = src;
                r.missed_ms = now_ms;
            })
            .or_insert(Resolving {
                src,
                missed_ms: now_ms,
                sent_ms: None,
            });
    }

    /// The ARP requests due at `now_ms` (OVS's `tnl_send_arp_request`):
    /// each built from the underlay port's address and MAC and translated
    /// as a packet the underlay port received (OVS's
    /// `compose_table_xlate`), ready to execute. The translation has no
    /// side effects, so a request flooded towards a tunnel cannot ask for
    /// another.
    pub fn solicitations(&self, tables: &Tables, cfg: &XlateConfig, now_ms: u64) -> Vec<Execute> {
        let due: Vec<(Ipv4Addr, Ipv4Addr)> = {
            let mut resolving = self.resolving.lock();
            if resolving.is_empty() {
                return Vec::new();
            }
            resolving.retain(|_, r| now_ms.saturating_sub(r.missed_ms) < RESOLVE_GIVE_UP_MS);
            resolving
                .iter_mut()
                .filter(|(_, r)| {
                    r.sent_ms
                        .is_none_or(|t| now_ms.saturating_sub(t) >= REQUEST_INTERVAL_MS)
                })
                .map(|(ip, r)| {
                    r.sent_ms = Some(now_ms);
                    (*ip, r.src)
                })
                .collect()
        };
        if due.is_empty() {
            return Vec::new();
        }
        let quiet = XlateConfig {
            side_effects: false,
            may_learn: false,
            snoop_neighbours: false,
            ..cfg.clone()
        };
        let in_port = match self.port {
            Some(p) => p,
            None => cfg.local_port,
        };
        due.into_iter()
            .filter_map(|(target, src)| {
                let packet = arp_request(self.underlay.mac, src, target);
                let md = Flow {
                    in_port,
                    ..Flow::default()
                };
                let flow = messages::extract::flow_extract(&packet, &md);
                let out = super::xlate(tables, &flow, &quiet);
                self.counters.arp_requests.fetch_add(1, Ordering::Relaxed);
                (!out.actions.is_empty()).then(|| Execute {
                    packet,
                    metadata: PacketMetadata::of(&flow),
                    actions: Arc::new(out.actions),
                    mru: 0,
                })
            })
            .collect()
    }
}

impl Ctx<'_> {
    /// The underlay port's OpenFlow and datapath numbers.
    pub(super) fn underlay_port(&self, nt: &NativeTunnel) -> (u32, u32) {
        match nt.port {
            Some(p) => (p, p),
            None => (port::LOCAL, self.cfg.local_port),
        }
    }

    /// OVS's `native_tunnel_output`, after `tnl_port_send` filled the
    /// flow's tunnel and the inner packet's changes were committed.
    pub(super) fn native_tunnel_output(&mut self, nt: &NativeTunnel, t: &TunnelConfig, last: bool) {
        let side_effects = self.cfg.side_effects;
        // Drops are counted for upcalls (a packet each), the translations
        // that may learn; revalidation translates again without a packet.
        let upcall = self.cfg.may_learn;
        let count = |c: &AtomicU64| {
            if upcall {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        if self.flow.tun_dst == 0 {
            // IPv6 underlays are not routed here.
            count(&nt.counters.no_route);
            return;
        }
        let Some((next_hop, route_src)) = nt.route(Ipv4Addr::from(self.flow.tun_dst)) else {
            count(&nt.counters.no_route);
            return;
        };
        let Some(dmac) = nt.neighbour(next_hop) else {
            // Dropped; the next hop is asked for, and the flow translates
            // again until it answers.
            count(&nt.counters.neighbour_miss);
            self.unresolved = true;
            if side_effects {
                nt.missed(next_hop, route_src, messages::dpif::monotonic_ms());
            }
            return;
        };
        let smac = nt.underlay.mac;
        let src = if self.flow.tun_src != 0 {
            self.flow.tun_src
        } else {
            u32::from(route_src)
        };
        let push = TnlPush {
            tnl_port: t.odp_port,
            out_port: self.underlay_port(nt).1,
            kind: t.kind,
            header: build_header(
                t.kind,
                &self.flow,
                route_src,
                smac,
                dmac,
                &messages::tlv::current(),
            ),
        };

        let (old_flow, old_base, old_wc) = (self.flow, self.base, *self.wc);
        let old_action_set = std::mem::take(&mut self.action_set);
        let old_stack = std::mem::take(&mut self.stack);
        let old_conntracked = self.conntracked;
        // The encapsulated packet, as OVS's propagate_tunnel_data_to_flow
        // makes it, in both the flow and the base (no set actions for it).
        let outer = |f: &mut Flow, tnl: &Flow| {
            f.dl_dst = dmac;
            f.dl_src = smac;
            f.vlans = Default::default();
            f.dl_type = ETH_TYPE_IP;
            f.nw_src = src;
            f.nw_dst = tnl.tun_dst;
            f.ipv6_src = [0; 16];
            f.ipv6_dst = [0; 16];
            f.nw_frag = 0;
            f.nw_tos = tnl.tun_tos;
            f.nw_ttl = tnl.tun_ttl;
            f.tp_src = tnl.tun_tp_src;
            f.tp_dst = tnl.tun_tp_dst;
            f.nw_proto = 17;
        };
        let tnl = self.flow;
        outer(&mut self.base, &tnl);
        outer(&mut self.flow, &tnl);
        // OVS's patch_port_output into the underlay (this same bridge),
        // from LOCAL, with a wildcard mask of its own: the megaflow is
        // the inner packet's.
        let of_port = self.underlay_port(nt).0;
        self.flow.in_port = of_port;
        self.flow.metadata = 0;
        self.flow.clear_tunnel();
        self.flow.regs = [0; FLOW_N_REGS];
        self.flow.actset_output = port::UNSET;
        self.flow.clear_conntrack();
        self.conntracked = false;

        let outer_actions = std::mem::take(&mut self.actions);
        self.actions.push(OdpAction::TnlPush(Box::new(push)));
        self.table_action(of_port, 0, last);
        if self.freeze.is_none() && !self.action_set.is_empty() {
            self.run_action_set();
        }
        let inner = std::mem::replace(&mut self.actions, outer_actions);
        if inner.len() > 1 {
            if last {
                self.actions.extend(inner);
            } else {
                self.actions.push(OdpAction::Clone(inner));
            }
        }

        self.flow = old_flow;
        self.base = old_base;
        *self.wc = old_wc;
        self.action_set = old_action_set;
        self.stack = old_stack;
        self.conntracked = old_conntracked;
    }

    /// OVS's `terminate_native_tunnel` for an output to `LOCAL`: the
    /// vport whose tunnel the packet is for, or (none) an ARP reply or
    /// gratuitous ARP snooped into the neighbour cache.
    pub(super) fn terminate_native_tunnel(&mut self, nt: &NativeTunnel) -> Option<u32> {
        if nt.underlay.addresses.is_empty() {
            return None;
        }
        let mut eps = Vec::new();
        for t in self.cfg.tunnels.values() {
            for &(addr, _) in &nt.underlay.addresses {
                let ep = TnlEndpoint {
                    mac: nt.underlay.mac,
                    addr,
                    udp_port: t.dst_port,
                    odp_port: t.odp_port,
                };
                if !eps.contains(&ep) {
                    eps.push(ep);
                }
            }
        }
        let flow = self.flow;
        if let Some(p) = tnl_port_lookup(&eps, &flow, self.wc) {
            // The remote's MAC, from its tunnel packet.
            self.neighbour_seen(nt, Ipv4Addr::from(flow.nw_src), flow.dl_src);
            return Some(p);
        }
        let is_arp = flow.dl_type == ETH_TYPE_ARP;
        let reply_to_us = is_arp && nt.underlay.has_address(Ipv4Addr::from(flow.nw_dst));
        let wc = &mut *self.wc;
        let mut garp = || {
            is_arp && {
                wc.nw_src = u32::MAX;
                wc.nw_dst = u32::MAX;
                flow.nw_src == flow.nw_dst
            }
        };
        if !(reply_to_us || garp()) {
            return None;
        }
        if !garp() {
            self.wc.nw_proto = u8::MAX;
            if flow.nw_proto != ARP_OP_REPLY {
                return None;
            }
        }
        self.wc.arp_sha = [0xff; 6];
        if flow.arp_sha == [0; 6] {
            return None;
        }
        self.wc.nw_src = u32::MAX;
        self.neighbour_seen(nt, Ipv4Addr::from(flow.nw_src), flow.arp_sha);
        None
    }

    /// OVS's `tnl_neigh_set` from a translated packet (`allow_update`):
    /// learned now for an upcall, kept for the flow to learn again.
    fn neighbour_seen(&mut self, nt: &NativeTunnel, ip: Ipv4Addr, mac: [u8; 6]) {
        if self.cfg.snoop_neighbours {
            nt.learn(ip, mac);
        }
        if !self.neighbours_seen.contains(&(ip, mac)) {
            self.neighbours_seen.push((ip, mac));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use messages::format::odp_actions::format_odp_actions;
    use messages::native_tunnel::Underlay;
    use messages::parse::rules::parse_rules;
    use messages::tunnel::{TunnelConfig, TunnelIp, TunnelKind};

    use super::NativeTunnel;
    use crate::tables::Tables;
    use crate::xlate::{xlate, XlateConfig};

    /// A neighbour miss drops the packet, marks the flow unresolved and
    /// (with side effects) asks for the next hop: an ARP request from the
    /// underlay port's address and MAC, translated from that port (here
    /// to the wire, port 2), once a second until the neighbour answers.
    #[test]
    fn a_neighbour_miss_sends_an_arp_request_through_the_tables() {
        let tables = Tables::from_rules(
            parse_rules(
                "in_port=1,actions=output:10\n\
                 in_port=3,actions=output:2\n",
            )
            .unwrap(),
        );
        let underlay = Underlay {
            addresses: vec![(Ipv4Addr::new(192, 168, 79, 1), 24)],
            mac: [2, 0, 0, 0x79, 0, 1],
            routes: Vec::new(),
        };
        let nt = Arc::new(NativeTunnel::new(underlay, Some(3), &[]));
        let mut geneve = TunnelConfig::new(
            TunnelKind::Geneve,
            TunnelIp::Fixed(Ipv4Addr::new(192, 168, 79, 2).into()),
        );
        geneve.odp_port = 6081;
        let cfg = XlateConfig {
            tunnels: Arc::new(BTreeMap::from([(10, geneve)])),
            native_tunnel: Some(nt.clone()),
            side_effects: true,
            may_learn: true,
            ..XlateConfig::default()
        };
        let flow = messages::parse::flow::parse_trace_flow(
            "in_port=1,dl_type=0x0800,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_proto=1",
        )
        .unwrap();
        let out = xlate(&tables, &flow, &cfg);
        assert!(out.actions.is_empty() && out.unresolved, "{out:?}");

        let sent = nt.solicitations(&tables, &cfg, 10_000);
        assert_eq!(sent.len(), 1);
        let arp = messages::extract::flow_extract(&sent[0].packet, &Default::default());
        assert_eq!(arp.dl_src, [2, 0, 0, 0x79, 0, 1]);
        assert_eq!(arp.dl_dst, [0xff; 6]);
        assert_eq!(Ipv4Addr::from(arp.nw_src), Ipv4Addr::new(192, 168, 79, 1));
        assert_eq!(Ipv4Addr::from(arp.nw_dst), Ipv4Addr::new(192, 168, 79, 2));
        assert_eq!(sent[0].metadata.in_port, 3);
        assert_eq!(format_odp_actions(&sent[0].actions), "2");

        // Not again within the interval; again after it while missed.
        assert!(nt.solicitations(&tables, &cfg, 10_500).is_empty());
        xlate(&tables, &flow, &cfg);
        assert_eq!(nt.solicitations(&tables, &cfg, 11_000).len(), 1);
        // Learned: no more requests, and the flow is resolved.
        nt.learn(Ipv4Addr::new(192, 168, 79, 2), [2, 0, 0, 0x79, 0, 2]);
        assert!(nt.solicitations(&tables, &cfg, 13_000).is_empty());
        assert!(!xlate(&tables, &flow, &cfg).unresolved);
        assert_eq!(
            nt.counters
                .arp_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
