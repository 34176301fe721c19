//! The `group:N` action: OVS's `xlate_group_action`. `all` and `indirect`
//! groups run every bucket, `ff` the first live one, `select` one chosen
//! by a hash: by default in the datapath (a `hash` action, a
//! recirculation, and on the way back the bucket that `dp_hash` names),
//! otherwise in the slow path.
//!
//! Each bucket runs as an action set, on the packet as it was before the
//! group: what a bucket changes is undone after it (OVS's
//! `xlate_group_bucket`), so later actions commit the old values again.

use messages::group::{Bucket, Group, GroupType, HashAlg, Selection, GROUP_ANY};
use messages::hash::{ovs_hash_bytes, ovs_hash_int, ovs_hash_uint64};
use messages::multipath::HashFields;
use messages::ofp::{port, OfAction};

use super::{add_to_action_set, Ctx, Freeze};
use crate::protocol::group_credit;

/// How deep `watch_group` chains are followed (OVS's
/// `MAX_LIVENESS_RECURSION`).
const MAX_LIVENESS_DEPTH: u32 = 128;

impl Ctx<'_> {
    /// Runs group `id`. Returns false when the group does not exist: as in
    /// OVS, the rest of the action list is then skipped (but not the
    /// pipeline).
    pub(super) fn group_action(&mut self, id: u32, last: bool) -> bool {
        if !self.resource_check() {
            return true;
        }
        let Some(group) = self.tables.group(id).cloned() else {
            return false;
        };
        // The flow's traffic goes to the group and the bucket it ran (all
        // of them for `all` and `indirect`); none when no bucket ran.
        let ran = match group.kind {
            GroupType::All | GroupType::Indirect => {
                let n = group.buckets.len();
                for (i, b) in group.buckets.iter().enumerate() {
                    self.group_bucket(b, last && i + 1 == n);
                }
                Some(None)
            }
            GroupType::FastFailover => {
                let live = group
                    .buckets
                    .iter()
                    .position(|b| self.bucket_alive(&group, b, 0));
                if let Some(i) = live {
                    self.group_bucket(&group.buckets[i], last);
                }
                live.map(Some)
            }
            GroupType::Select => {
                let chosen = self.pick_select_bucket(&group);
                if let Some(i) = chosen {
                    self.group_bucket(&group.buckets[i], last);
                }
                chosen.map(Some)
            }
        };
        if let Some(bucket) = ran {
            self.rules.push(group_credit(id, bucket));
        }
        true
    }

    /// OVS's `xlate_group_bucket`.
    fn group_bucket(&mut self, bucket: &Bucket, last: bool) {
        let mut list = Vec::new();
        for a in &bucket.actions {
            add_to_action_set(&mut list, a.clone());
        }
        // An action set that sends the packet nowhere does nothing.
        let sends = list.iter().any(|a| {
            matches!(
                a,
                OfAction::Output { .. }
                    | OfAction::Controller { .. }
                    | OfAction::Group(_)
                    | OfAction::Resubmit { .. }
                    | OfAction::Ct(_)
            )
        });
        if !sends {
            return;
        }
        let old_flow = self.flow;
        let old_was_mpls = self.was_mpls;
        self.depth += 1;
        let outer = std::mem::replace(&mut self.in_group, true);
        self.run_actions(&list, None, last);
        self.in_group = outer;
        self.depth -= 1;
        if self.freeze.is_some() {
            self.end_pass();
        }
        self.flow = old_flow;
        // Nor does a pop of MPLS in it (OVS's `xlate_group_bucket`).
        self.was_mpls = old_was_mpls;
        // A bucket that exits (or froze) does not stop what follows the
        // group.
        self.exit = false;
    }

    /// OVS's `bucket_is_alive`.
    fn bucket_alive(&self, group: &Group, b: &Bucket, depth: u32) -> bool {
        if depth >= MAX_LIVENESS_DEPTH {
            return false;
        }
        if group.kind == GroupType::Select && b.weight == 0 {
            return false;
        }
        !b.has_liveness()
            || (b.watch_port != port::ANY
                && b.watch_port != port::CONTROLLER
                && self.port_alive(b.watch_port))
            || (b.watch_group != GROUP_ANY && self.group_alive(b.watch_group, depth + 1))
    }

    /// Whether a watched port is live: the bridge has it and its link is
    /// up (OVS's `odp_port_is_alive`: the port's `may_enable`).
    pub(super) fn port_alive(&self, p: u32) -> bool {
        let p = match p {
            port::LOCAL => self.cfg.local_port,
            p if p < port::MAX => p,
            _ => return false,
        };
        self.port_exists(p) && self.tables.port_live(p)
    }

    fn group_alive(&self, id: u32, depth: u32) -> bool {
        self.tables
            .group(id)
            .is_some_and(|g| g.buckets.iter().any(|b| self.bucket_alive(g, b, depth)))
    }

    /// OVS's `pick_select_group`: the bucket's index, or None (no live
    /// bucket, or the datapath is to hash first: then translation froze).
    fn pick_select_bucket(&mut self, group: &Group) -> Option<usize> {
        // The hash may read L3 headers that a pop of MPLS left unknown.
        if self.was_mpls {
            self.trigger_freeze();
            return None;
        }
        match &group.selection {
            Selection::DpHash {
                alg,
                basis,
                hash_map,
            } => {
                // dp_hash 0 means "not computed": every computed one is not 0.
                if self.flow.dp_hash == 0 {
                    let alg = if self.cfg.l4_hash_only {
                        HashAlg::L4
                    } else {
                        *alg
                    };
                    self.exit = true;
                    self.freeze = Some(Freeze {
                        hash: Some((alg as u32, *basis)),
                        continuation: Vec::new(),
                        pause: None,
                    });
                    return None;
                }
                let mask = hash_map.len() as u32 - 1;
                self.wc.dp_hash |= mask;
                (0..=mask)
                    .map(|i| hash_map[(self.flow.dp_hash.wrapping_add(i) & mask) as usize])
                    .find(|&b| self.bucket_alive(group, &group.buckets[b], 0))
            }
            Selection::Default => {
                // OVS's `pick_default_select_group`: `flow_hash_symmetric_l4`
                // with basis 0, each bucket scored by `hash_int(id, hash)`.
                HashFields::SymmetricL4.mask(&self.flow, &mut *self.wc);
                let hash = HashFields::SymmetricL4.hash(&self.flow, 0);
                self.best_live_bucket(group, |id| ovs_hash_int(id, hash))
            }
            Selection::Hash { fields, basis } => {
                // OVS's `pick_hash_fields_select_group`: each field's bytes,
                // masked, in network order, hashed in turn (fields in
                // meta-flow order, as `choose_selection` sorted them).
                let mut hash = ovs_hash_uint64(*basis);
                for &(field, mask) in fields {
                    if !self.prereqs_ok(field.prereq()) {
                        continue;
                    }
                    let v = field.get(&self.flow) & mask;
                    let n_bytes = field.n_bits().div_ceil(8) as usize;
                    hash = ovs_hash_bytes(&v.to_be_bytes()[16 - n_bytes..], hash);
                    field.set_masked(&mut *self.wc, mask, mask);
                }
                self.best_live_bucket(group, |id| ovs_hash_int(id, hash))
            }
        }
    }

    /// OVS's `group_best_live_bucket`: the live bucket with the highest
    /// score, `hash` of its id times its weight (the last of equals).
    fn best_live_bucket(&self, group: &Group, hash: impl Fn(u32) -> u32) -> Option<usize> {
        let mut best = None;
        let mut best_score = 0;
        for (i, b) in group.buckets.iter().enumerate() {
            if self.bucket_alive(group, b, 0) {
                let score = (hash(b.id) & 0xffff) * u32::from(b.weight);
                if score >= best_score {
                    best = Some(i);
                    best_score = score;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use messages::format::megaflow::format_megaflow;
    use messages::format::odp_actions::format_odp_actions;
    use messages::parse::flow::parse_trace_flow;
    use messages::parse::rules::{parse_group, parse_rules};

    use crate::tables::Tables;
    use crate::xlate::{xlate, XlateConfig};

    /// OVS's ofproto-dpif.at "group actions have no effect afterwards": the
    /// first pass hashes and recirculates; the second, with any dp_hash,
    /// runs the bucket and undoes it for the output after the group, and
    /// its megaflow matches the 16 hash values' bits and the rewritten
    /// source (OVS installs `recirc_id(0x1),dp_hash(0xXXXX/0xf),in_port(1),
    /// eth_type(0x0800),ipv4(src=192.168.0.1,frag=no)`).
    #[test]
    fn a_select_group_resumes_on_its_dp_hash_as_ovs() {
        let mut tables = Tables::from_rules(parse_rules("ip,actions=group:1234,output:8").unwrap());
        tables
            .add_group(
                parse_group(
                    "group_id=1234,type=select,bucket=set_field:192.168.3.90->ip_src,output:8",
                )
                .unwrap(),
            )
            .unwrap();
        let cfg = XlateConfig::default();
        let flow = parse_trace_flow(
            "in_port=1,dl_src=50:54:00:00:00:07,dl_dst=50:54:00:00:00:01,dl_type=0x0800,\
             nw_src=192.168.0.1,nw_dst=192.168.1.2,nw_proto=1,nw_ttl=128,icmp_type=8",
        )
        .unwrap();
        let first = xlate(&tables, &flow, &cfg);
        assert_eq!(
            format_odp_actions(&first.actions),
            "hash(sym_l4(0)),recirc(0x1)"
        );
        assert_eq!(
            format_megaflow(&flow, &first.wc),
            "recirc_id=0,eth,ip,in_port=1,nw_frag=no"
        );
        for dp_hash in [0x1234_5678, 0x9, 0xffff_fff0] {
            let mut again = flow;
            again.recirc_id = 1;
            again.dp_hash = dp_hash;
            let second = xlate(&tables, &again, &cfg);
            assert_eq!(
                format_odp_actions(&second.actions),
                "set(ipv4(src=192.168.3.90)),8,set(ipv4(src=192.168.0.1)),8"
            );
            assert_eq!(second.wc.dp_hash, 0xf);
            assert_eq!(second.wc.nw_src, u32::MAX);
            assert_eq!(second.wc.recirc_id, u32::MAX);
        }
        // With the kernel's hash only, the group asks for it.
        let kernel = XlateConfig {
            l4_hash_only: true,
            ..XlateConfig::default()
        };
        assert_eq!(
            format_odp_actions(&xlate(&tables, &flow, &kernel).actions),
            "hash(l4(0)),recirc(0x1)"
        );
    }

    /// A flow's traffic is credited to the groups and buckets it ran, as
    /// OVS's `xlate_group_stats`: the bucket a select or fast-failover
    /// group chose, every bucket of an `all` group; the first pass of a
    /// dp_hash select group ran none.
    #[test]
    fn the_translation_lists_the_group_buckets_it_ran() {
        use crate::protocol::{credited_group, group_credit};
        let mut tables = Tables::from_rules(
            parse_rules(
                "in_port=1,actions=group:1\n\
                 in_port=2,actions=group:2\n\
                 in_port=3,actions=group:3\n\
                 in_port=4,actions=group:4",
            )
            .unwrap(),
        );
        for g in [
            "group_id=1,type=all,bucket=output:5,bucket=output:6",
            "group_id=2,type=ff,bucket=watch_port:9,output:9,bucket=watch_port:6,output:6",
            "group_id=3,type=select,selection_method=hash,fields(ip_src),bucket=output:5,bucket=output:6",
            "group_id=4,type=select,bucket=output:5,bucket=output:6",
        ] {
            tables.add_group(parse_group(g).unwrap()).unwrap();
        }
        let cfg = XlateConfig {
            ports: Some(std::sync::Arc::new(
                [1, 2, 3, 4, 5, 6].into_iter().collect(),
            )),
            ..XlateConfig::default()
        };
        let credits = |in_port: u32, recirc_id: u32| {
            let flow = parse_trace_flow(&format!(
                "in_port={in_port},recirc_id={recirc_id},ip,nw_src=10.0.0.1"
            ))
            .unwrap();
            let out = xlate(&tables, &flow, &cfg);
            out.rules
                .iter()
                .filter_map(|id| credited_group(*id))
                .collect::<Vec<_>>()
        };
        assert_eq!(credits(1, 0), [(1, None)]);
        // Port 9 is not on the bridge: its bucket is dead.
        assert_eq!(credits(2, 0), [(2, Some(1))]);
        let (group, bucket) = credits(3, 0)[0];
        assert!(group == 3 && bucket.is_some_and(|b| b < 2), "{bucket:?}");
        assert_eq!(credits(4, 0), []);
        assert_eq!(
            credited_group(group_credit(0xffff_ff00, Some(7))),
            Some((0xffff_ff00, Some(7)))
        );
        assert_eq!(credited_group(group_credit(0, None)), Some((0, None)));
        assert_eq!(credited_group(12345), None);
    }
}
