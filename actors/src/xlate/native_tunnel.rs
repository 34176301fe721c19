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

use parking_lot::RwLock;

use messages::flow::*;
use messages::native_tunnel::{build_header, tnl_port_lookup, TnlEndpoint, TnlPush, Underlay};
use messages::odp::OdpAction;
use messages::ofp::port;
use messages::tunnel::TunnelConfig;

use super::Ctx;

const ARP_OP_REPLY: u8 = 2;

/// The underlay of a bridge that tunnels natively: its addresses and
/// routes, and the neighbour cache (OVS's `tnl-neigh-cache`).
#[derive(Debug, Default)]
pub struct NativeTunnel {
    pub underlay: Underlay,
    /// The OpenFlow port that holds the underlay address (`None`: `LOCAL`).
    pub port: Option<u32>,
    neighbours: RwLock<HashMap<Ipv4Addr, [u8; 6]>>,
    /// Bumped when a neighbour is learned or changes: installed flows
    /// re-translate (OVS's `tnl_conf_seq`).
    generation: AtomicU64,
    pub counters: NativeTunnelCounters,
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
}

impl NativeTunnel {
    /// An underlay with static neighbours (OVS's `tnl/neigh/set`).
    pub fn new(
        underlay: Underlay,
        port: Option<u32>,
        neighbours: &[(Ipv4Addr, [u8; 6])],
    ) -> NativeTunnel {
        NativeTunnel {
            underlay,
            port,
            neighbours: RwLock::new(neighbours.iter().copied().collect()),
            ..NativeTunnel::default()
        }
    }

    pub fn neighbour(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.neighbours.read().get(&ip).copied()
    }

    /// Learns (or refreshes) a neighbour; a change makes flows re-translate.
    pub fn learn(&self, ip: Ipv4Addr, mac: [u8; 6]) {
        if self.neighbour(ip) == Some(mac) || mac == [0; 6] {
            return;
        }
        self.neighbours.write().insert(ip, mac);
        self.counters
            .neighbours_learned
            .fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever the neighbour cache does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The neighbours, sorted, as `ovs-appctl tnl/neigh/show` lists them.
    pub fn neighbours(&self) -> Vec<(Ipv4Addr, [u8; 6])> {
        let mut v: Vec<_> = self
            .neighbours
            .read()
            .iter()
            .map(|(a, m)| (*a, *m))
            .collect();
        v.sort();
        v
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
        let count = |c: &AtomicU64| {
            if side_effects {
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        if self.flow.tun_dst == 0 {
            // IPv6 underlays are not routed here.
            count(&nt.counters.no_route);
            return;
        }
        let Some((next_hop, route_src)) = nt.underlay.route(Ipv4Addr::from(self.flow.tun_dst))
        else {
            count(&nt.counters.no_route);
            return;
        };
        let Some(dmac) = nt.neighbour(next_hop) else {
            count(&nt.counters.neighbour_miss);
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
            if self.cfg.side_effects {
                // The remote's MAC, from its tunnel packet.
                nt.learn(Ipv4Addr::from(flow.nw_src), flow.dl_src);
            }
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
        if self.cfg.side_effects {
            nt.learn(Ipv4Addr::from(flow.nw_src), flow.arp_sha);
        }
        None
    }
}
