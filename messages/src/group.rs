//! OpenFlow groups (OVS's `struct ofgroup` and `group_dpif`): a group is a
//! list of buckets, each a list of actions, run by the `group:N` action
//! according to the group's type. Parsing is in `parse::group`, printing
//! in `format::group`, translation in the actors' `xlate`.

use crate::field::Field;
use crate::ofp::{port, OfAction};

/// "No group" for a bucket's `watch_group` (OpenFlow's `OFPG_ANY`).
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// The largest group number a group may have (`OFPG_MAX`).
pub const GROUP_MAX: u32 = 0xffff_ff00;

/// How a group uses its buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    /// Every bucket, each on a copy of the packet.
    All,
    /// One bucket per flow, chosen by a hash (`select`).
    Select,
    /// Its single bucket.
    Indirect,
    /// The first bucket whose watched port or group is live (`ff`).
    FastFailover,
}

impl GroupType {
    /// The name `dump-groups` prints.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::All => "all",
            GroupType::Select => "select",
            GroupType::Indirect => "indirect",
            GroupType::FastFailover => "ff",
        }
    }
}

/// The datapath's hash algorithms (`enum ovs_hash_alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// `OVS_HASH_ALG_L4`: the 5-tuple, as the kernel's `skb_get_hash`.
    L4 = 0,
    /// `OVS_HASH_ALG_SYM_L4`: the 5-tuple, the same both ways.
    SymL4 = 1,
}

/// How a select group picks its bucket (OVS's `group_set_selection_method`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    /// In the slow path, by a symmetric hash of the 5-tuple (OVS falls
    /// back to it when the weights need more than 256 hash values).
    Default,
    /// In the datapath: a `hash(...)` action and a recirculation, whose
    /// lookup reads `dp_hash & (hash_map.len() - 1)` and takes the bucket
    /// `hash_map` names for it (OVS's default for select groups).
    DpHash {
        alg: HashAlg,
        basis: u32,
        /// Bucket index per hash value; its length is a power of two.
        hash_map: Vec<usize>,
    },
    /// In the slow path, by a hash of these fields (masked), seeded with
    /// `basis` (`selection_method=hash,fields(...)`).
    Hash {
        fields: Vec<(Field, u128)>,
        basis: u64,
    },
}

/// A group's counters, as OpenFlow's group statistics give them
/// (`ofputil_group_stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub id: u32,
    /// The rules that send to the group (OpenFlow's `ref_count`).
    pub ref_count: u32,
    /// Since the group was added (a modify keeps it).
    pub duration: std::time::Duration,
    pub packets: u64,
    pub bytes: u64,
    /// (packets, bytes) of each bucket, in bucket order.
    pub buckets: Vec<(u64, u64)>,
}

/// One bucket of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub id: u32,
    /// For select groups: the bucket's share (0: never chosen).
    pub weight: u16,
    /// For fast-failover groups: the port whose liveness the bucket's
    /// depends on (`port::ANY`: none).
    pub watch_port: u32,
    /// Likewise a group (`GROUP_ANY`: none).
    pub watch_group: u32,
    /// The bucket's actions, in the order an action set runs them.
    pub actions: Vec<OfAction>,
}

impl Bucket {
    /// Whether liveness applies to the bucket at all
    /// (`ofputil_bucket_has_liveness`).
    pub fn has_liveness(&self) -> bool {
        self.watch_port != port::ANY || self.watch_group != GROUP_ANY
    }
}

/// A group as `add-group` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    pub id: u32,
    pub kind: GroupType,
    /// Only for select groups; `Default` otherwise.
    pub selection: Selection,
    /// What `selection_method=` said, printed back by `dump-groups`.
    pub selection_method: Option<String>,
    pub buckets: Vec<Bucket>,
}

/// The most hash values a dp_hash select group uses
/// (OVS's `MAX_SELECT_GROUP_HASH_VALUES`).
const MAX_HASH_VALUES: u64 = 256;

/// Spreads `n_hash` hash values over buckets in proportion to their
/// weights by Webster's (Sainte-Laguë) method, as OVS's
/// `group_setup_dp_hash_table`; `None` where that needs more than `max`
/// values (or no bucket has weight).
pub fn dp_hash_map(weights: &[u16], max: u64) -> Option<Vec<usize>> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let min = weights.iter().copied().filter(|&w| w > 0).min()?;
    if total == 0 {
        return None;
    }
    let n_hash = total.div_ceil(u64::from(min)).next_power_of_two().max(16);
    if n_hash > MAX_HASH_VALUES || (max != 0 && n_hash > max) {
        return None;
    }
    let mut divisor = vec![1u32; weights.len()];
    let mut value: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
    let mut map = Vec::with_capacity(n_hash as usize);
    for _ in 0..n_hash {
        // The first of the largest wins, as in OVS.
        let mut winner = 0;
        for i in 1..weights.len() {
            if value[i] > value[winner] {
                winner = i;
            }
        }
        divisor[winner] += 2;
        value[winner] = f64::from(weights[winner]) / f64::from(divisor[winner]);
        map.push(winner);
    }
    Some(map)
}

impl Group {
    /// Decides how a select group selects (`group_set_selection_method`):
    /// `method` and `param` as given, `fields` for `hash`.
    pub fn choose_selection(
        &mut self,
        method: Option<&str>,
        param: u64,
        fields: Vec<(Field, u128)>,
    ) {
        let weights: Vec<u16> = self.buckets.iter().map(|b| b.weight).collect();
        self.selection = match method {
            _ if self.kind != GroupType::Select => Selection::Default,
            None => match dp_hash_map(&weights, MAX_HASH_VALUES) {
                Some(hash_map) => Selection::DpHash {
                    alg: HashAlg::SymL4,
                    basis: 0,
                    hash_map,
                },
                None => Selection::Default,
            },
            Some("dp_hash") => match dp_hash_map(&weights, 0) {
                Some(hash_map) => Selection::DpHash {
                    alg: if param >> 32 == 1 {
                        HashAlg::SymL4
                    } else {
                        HashAlg::L4
                    },
                    basis: param as u32,
                    hash_map,
                },
                None => Selection::Default,
            },
            Some(_) if fields.is_empty() => Selection::Default,
            Some(_) => {
                // OVS keeps the fields as a bitmap: each once, hashed and
                // printed in meta-flow order.
                let mut fields = fields;
                fields.sort_by_key(|&(f, _)| (meta_flow_class(f), f));
                fields.dedup_by_key(|(f, _)| *f);
                Selection::Hash {
                    fields,
                    basis: param,
                }
            }
        };
    }
}

/// The part of OVS's meta-flow order a field is in (before the packet
/// fields, `Field` is not declared in it): hash and recirculation,
/// tunnel, port and metadata, conntrack, registers, then the packet.
fn meta_flow_class(f: Field) -> u8 {
    use Field::*;
    match f {
        DpHash | RecircId | ConjId => 0,
        TunId
        | TunSrc
        | TunDst
        | TunIpv6Src
        | TunIpv6Dst
        | TunFlags
        | TunTos
        | TunTtl
        | TunGbpId
        | TunGbpFlags
        | TunMetadata { .. } => 1,
        Metadata | InPort | ActsetOutput | SkbPriority | PktMark => 2,
        CtState | CtZone | CtMark | CtLabel | CtNwSrc | CtNwDst | CtIpv6Src | CtIpv6Dst
        | CtNwProto | CtTpSrc | CtTpDst => 3,
        Reg(_) | XReg(_) | XxReg(_) => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webster_spreads_hash_values_by_weight() {
        let map = dp_hash_map(&[100, 100], 256).unwrap();
        assert_eq!(map.len(), 16);
        assert_eq!(map.iter().filter(|&&b| b == 0).count(), 8);
        assert_eq!(&map[..4], &[0, 1, 0, 1]);
        let map = dp_hash_map(&[1, 3], 256).unwrap();
        assert_eq!(map.iter().filter(|&&b| b == 1).count(), 12);
        // 1 against 1000 needs 1024 values: too many.
        assert_eq!(dp_hash_map(&[1, 1000], 256), None);
        assert_eq!(dp_hash_map(&[0, 0], 256), None);
    }
}
