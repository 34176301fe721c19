//! The `NORMAL` action: OVS's `xlate_normal`, a learning switch with
//! per-port VLAN modes, on the bridge's [`MacTable`](crate::mac_learning::MacTable).
//!
//! Every port is its own bundle (no bonds, mirrors, multicast snooping
//! or STP). Flooding walks the ports in ascending OpenFlow number, `LOCAL`
//! last: OVS floods in the order of a hash table of pointers, which
//! changes from run to run, so no fixed order could match it.

use std::sync::Arc;

use messages::flow::*;
use messages::ofp::port;

use super::Ctx;
use crate::mac_learning::now_secs;

/// A port's VLAN mode (OVS's `vlan_mode` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VlanMode {
    /// Untagged frames only, in the port's VLAN.
    Access,
    /// Tagged frames of the trunked VLANs (all when none are listed).
    #[default]
    Trunk,
    /// A trunk whose untagged frames belong to its VLAN, sent tagged.
    NativeTagged,
    /// A trunk whose untagged frames belong to its VLAN, sent untagged.
    NativeUntagged,
}

impl VlanMode {
    /// The `vlan_mode` names OVS uses.
    pub fn parse(s: &str) -> Result<VlanMode, String> {
        match s {
            "access" => Ok(VlanMode::Access),
            "trunk" => Ok(VlanMode::Trunk),
            "native-tagged" => Ok(VlanMode::NativeTagged),
            "native-untagged" => Ok(VlanMode::NativeUntagged),
            "dot1q-tunnel" => Err("vlan_mode \"dot1q-tunnel\" is not supported".into()),
            other => Err(format!(
                "vlan_mode {other:?}: want access, trunk, native-tagged or native-untagged"
            )),
        }
    }
}

/// A set of VLAN ids (0..4096).
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet([u64; 64]);

impl std::fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((0..4096u16).filter(|v| self.contains(*v)))
            .finish()
    }
}

impl VlanSet {
    pub fn empty() -> Self {
        VlanSet([0; 64])
    }
    pub fn all() -> Self {
        VlanSet([u64::MAX; 64])
    }
    pub fn contains(&self, vid: u16) -> bool {
        let v = vid as usize & 0xfff;
        self.0[v / 64] & (1 << (v % 64)) != 0
    }
    pub fn set(&mut self, vid: u16, on: bool) {
        let v = vid as usize & 0xfff;
        if on {
            self.0[v / 64] |= 1 << (v % 64);
        } else {
            self.0[v / 64] &= !(1 << (v % 64));
        }
    }
}

/// A port's VLAN configuration, as OVS's bridge hands it to a bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortVlan {
    pub mode: VlanMode,
    /// The access or native VLAN (0 when none).
    pub vlan: u16,
    /// The VLANs a non-access port carries; `None`: all.
    pub trunks: Option<Arc<VlanSet>>,
}

impl PortVlan {
    /// From the port's `tag`, `trunks` and `vlan_mode` as OVS's
    /// `bridge.c` and `bundle_set` read them: without a mode, a tag makes
    /// an access port (its trunks ignored) and no tag a trunk; the native
    /// modes always trunk their VLAN and never VLAN 0.
    pub fn from_config(
        mode: Option<VlanMode>,
        tag: Option<u16>,
        trunks: &[u16],
    ) -> Result<PortVlan, String> {
        if let Some(t) = tag.filter(|t| *t > 4095) {
            return Err(format!("tag {t}: a VLAN is 0 to 4095"));
        }
        if let Some(t) = trunks.iter().find(|t| **t > 4095) {
            return Err(format!("trunks: {t} is not a VLAN (0 to 4095)"));
        }
        let mode = mode.unwrap_or(if tag.is_some() {
            VlanMode::Access
        } else {
            VlanMode::Trunk
        });
        let given = (!trunks.is_empty()).then(|| {
            let mut s = VlanSet::empty();
            for t in trunks {
                s.set(*t, true);
            }
            s
        });
        let vlan = tag.unwrap_or(0);
        let trunks = match mode {
            VlanMode::Access => None,
            VlanMode::Trunk => given,
            VlanMode::NativeTagged | VlanMode::NativeUntagged => {
                let needs_fix = given
                    .as_ref()
                    .is_none_or(|s| !s.contains(vlan) || s.contains(0));
                if vlan != 0 && needs_fix {
                    let mut s = given.unwrap_or_else(VlanSet::all);
                    s.set(vlan, true);
                    s.set(0, false);
                    Some(s)
                } else {
                    given
                }
            }
        };
        Ok(PortVlan {
            mode,
            vlan: if mode == VlanMode::Trunk { 0 } else { vlan },
            trunks: trunks.map(Arc::new),
        })
    }

    /// OVS's `xbundle_trunks_vlan`.
    fn trunks_vlan(&self, vid: u16) -> bool {
        self.mode != VlanMode::Access && self.trunks.as_ref().is_none_or(|s| s.contains(vid))
    }

    /// OVS's `xbundle_includes_vlan`.
    fn includes(&self, x: &XVlan) -> bool {
        match self.mode {
            VlanMode::Access => x.v[0].vid == self.vlan && x.v[1].vid == 0,
            _ => self.trunks_vlan(x.v[0].vid),
        }
    }

    /// OVS's `input_vid_is_valid`.
    fn accepts(&self, vid: u16) -> bool {
        match self.mode {
            VlanMode::Access => vid == 0,
            VlanMode::NativeTagged | VlanMode::NativeUntagged if vid == 0 => true,
            _ => self.trunks_vlan(vid),
        }
    }

    /// OVS's `xvlan_input_translate`: the packet's VLANs inside the bridge.
    fn input(&self, x: &XVlan) -> XVlan {
        let mut out = *x;
        let native = |out: &mut XVlan| {
            out.v[0].tpid = if x.v[0].tpid != 0 {
                x.v[0].tpid
            } else {
                ETH_TYPE_VLAN_8021Q
            };
            out.v[0].vid = self.vlan;
            out.v[0].pcp = x.v[0].pcp;
        };
        match self.mode {
            VlanMode::Access => {
                out = XVlan::default();
                native(&mut out);
            }
            VlanMode::Trunk => {}
            VlanMode::NativeTagged | VlanMode::NativeUntagged => {
                if x.v[0].vid == 0 {
                    native(&mut out);
                }
            }
        }
        out
    }

    /// OVS's `xvlan_output_translate`: the VLANs the packet leaves with.
    fn output(&self, x: &XVlan) -> XVlan {
        match self.mode {
            VlanMode::Access => XVlan::default(),
            VlanMode::Trunk | VlanMode::NativeTagged => *x,
            VlanMode::NativeUntagged => {
                let mut out = *x;
                if x.v[0].vid == self.vlan {
                    out.v.copy_within(1.., 0);
                    out.v[FLOW_MAX_VLAN_HEADERS - 1] = XVlanHdr::default();
                }
                out
            }
        }
    }
}

/// One VLAN header as NORMAL sees it (OVS's `struct xvlan_single`); `pcp`
/// stays in its TCI position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct XVlanHdr {
    tpid: u16,
    vid: u16,
    pcp: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct XVlan {
    v: [XVlanHdr; FLOW_MAX_VLAN_HEADERS],
}

impl XVlan {
    /// OVS's `xvlan_extract`.
    fn of(flow: &Flow) -> XVlan {
        let mut x = XVlan::default();
        for (h, v) in x.v.iter_mut().zip(flow.vlans.iter()) {
            if !eth_type_vlan(v.tpid) || v.tci & VLAN_CFI == 0 {
                break;
            }
            *h = XVlanHdr {
                tpid: v.tpid,
                vid: v.tci & VLAN_VID_MASK,
                pcp: v.tci & VLAN_PCP_MASK,
            };
        }
        x
    }

    /// OVS's `xvlan_put` (no priority tags): a header with a zero TCI is
    /// left out.
    fn put(&self, flow: &mut Flow) {
        for (h, v) in self.v.iter().zip(flow.vlans.iter_mut()) {
            let mut tci = h.vid | h.pcp;
            if tci != 0 {
                tci |= VLAN_CFI;
                v.tpid = if h.tpid != 0 {
                    h.tpid
                } else {
                    ETH_TYPE_VLAN_8021Q
                };
            }
            v.tci = tci;
        }
    }
}

/// What a `NORMAL` translation learned from (OVS's `XC_NORMAL` cache
/// entry): revalidators learn it again while the flow carries traffic, so
/// that the entry does not age out under a megaflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormalLearn {
    pub mac: [u8; 6],
    pub vlan: u16,
    pub port: u32,
    pub grat_arp: bool,
}

/// OVS's `eth_addr_is_reserved`: frames NORMAL never forwards (STP,
/// pause, and other link-local protocols).
fn is_reserved(mac: &[u8; 6]) -> bool {
    let v = mac.iter().fold(0u64, |a, b| a << 8 | *b as u64);
    (0x0180_c200_0000..=0x0180_c200_000f).contains(&v)
        || matches!(
            v,
            0x00e0_2b00_0000
                | 0x00e0_2b00_0004
                | 0x00e0_2b00_0006
                | 0x0100_0c00_0000
                | 0x0100_0ccc_cccc
                | 0x0100_0ccc_cccd
                | 0x0100_0ccd_cdcd
        )
        || (0x0100_0ccc_ccc0..=0x0100_0ccc_ccc7).contains(&v)
}

/// The bundle a packet came in on.
enum InBundle {
    /// A port of the bridge (OpenFlow number).
    Port(u32),
    /// `CONTROLLER` or `NONE`: any VLAN, nothing learned.
    None,
}

impl Ctx<'_> {
    /// The OpenFlow ports of the bridge, ascending (`LOCAL` last).
    pub(super) fn bridge_ports(&self) -> Vec<u32> {
        let local = self.cfg.local_port;
        let mut v: Vec<u32> = match self.ports() {
            Some(p) => p
                .iter()
                .map(|&dp| if dp == local { port::LOCAL } else { dp })
                .collect(),
            None => self
                .cfg
                .vlans
                .keys()
                .copied()
                .chain([port::LOCAL])
                .collect(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    fn is_bridge_port(&self, p: u32) -> bool {
        if p == port::LOCAL {
            return self.port_exists(self.cfg.local_port);
        }
        match self.ports() {
            Some(ps) => p != self.cfg.local_port && ps.contains(&p),
            None => self.cfg.vlans.contains_key(&p),
        }
    }

    fn port_vlan(&self, p: u32) -> PortVlan {
        self.cfg.vlans.get(&p).cloned().unwrap_or_default()
    }

    /// OVS's `xlate_normal`.
    pub(super) fn normal(&mut self) {
        self.wc.dl_src = [0xff; 6];
        self.wc.dl_dst = [0xff; 6];
        self.wc.vlans[0].tci |= VLAN_VID_MASK | VLAN_CFI;

        let in_port = self.flow.in_port;
        let in_bundle = if self.is_bridge_port(in_port) {
            InBundle::Port(in_port)
        } else if in_port == port::CONTROLLER || in_port == port::ANY {
            InBundle::None
        } else {
            return; // No input bundle.
        };
        // A partial VLAN tag.
        if eth_type_vlan(self.flow.dl_type) && self.flow.vlans[0].tci & VLAN_CFI == 0 {
            return;
        }
        let in_xvlan = XVlan::of(&self.flow);
        let in_vlan = match in_bundle {
            InBundle::Port(p) => self.port_vlan(p),
            InBundle::None => PortVlan::default(),
        };
        if matches!(in_bundle, InBundle::Port(_)) && !in_vlan.accepts(in_xvlan.v[0].vid) {
            return;
        }
        let xvlan = in_vlan.input(&in_xvlan);
        let vlan = xvlan.v[0].vid;
        if matches!(in_bundle, InBundle::Port(_)) && is_reserved(&self.flow.dl_dst) {
            return;
        }

        let grat_arp = self.is_gratuitous_arp();
        if let InBundle::Port(p) = in_bundle {
            let learn = NormalLearn {
                mac: self.flow.dl_src,
                vlan,
                port: p,
                grat_arp,
            };
            if self.cfg.may_learn {
                self.cfg.mac.learn(
                    learn.mac,
                    learn.vlan,
                    learn.port,
                    learn.grat_arp,
                    now_secs(),
                );
            }
            self.mac_learned.push(learn);
        }

        let in_p = match in_bundle {
            InBundle::Port(p) => Some(p),
            InBundle::None => None,
        };
        match self.cfg.mac.lookup(&self.flow.dl_dst, vlan) {
            Some(p) if Some(p) != in_p && self.is_bridge_port(p) => {
                let out_vlan = self.port_vlan(p);
                self.output_normal(p, &out_vlan, &xvlan);
            }
            // Learned on the input port, or on a port that is gone: drop.
            Some(_) => {}
            None => {
                for p in self.bridge_ports() {
                    if Some(p) == in_p {
                        continue;
                    }
                    let out_vlan = self.port_vlan(p);
                    if out_vlan.includes(&xvlan) {
                        self.output_normal(p, &out_vlan, &xvlan);
                    }
                }
            }
        }
    }

    /// OVS's `output_normal` for a port that is not a bond.
    fn output_normal(&mut self, p: u32, out_vlan: &PortVlan, xvlan: &XVlan) {
        let out = out_vlan.output(xvlan);
        let old = self.flow.vlans;
        out.put(&mut self.flow);
        let dp = if p == port::LOCAL {
            self.cfg.local_port
        } else {
            p
        };
        self.compose_output(dp);
        self.flow.vlans = old;
    }

    /// OVS's `is_gratuitous_arp`, un-wildcarding what it reads.
    fn is_gratuitous_arp(&mut self) -> bool {
        let f = &self.flow;
        if f.dl_type != ETH_TYPE_ARP {
            return false;
        }
        self.wc.dl_dst = [0xff; 6];
        if f.dl_dst != [0xff; 6] {
            return false;
        }
        self.wc.nw_proto = 0xff;
        match f.nw_proto {
            2 => true,
            1 => {
                self.wc.nw_src = u32::MAX;
                self.wc.nw_dst = u32::MAX;
                f.nw_src == f.nw_dst
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_vlan_modes_follow_ovs_bridge_config() {
        let access = PortVlan::from_config(None, Some(10), &[20]).unwrap();
        assert_eq!(access.mode, VlanMode::Access);
        assert_eq!(access.vlan, 10);
        assert!(
            access.trunks.is_none(),
            "an access port's trunks are ignored"
        );
        let trunk = PortVlan::from_config(None, None, &[10, 20]).unwrap();
        assert_eq!(trunk.mode, VlanMode::Trunk);
        assert!(trunk.trunks_vlan(10) && !trunk.trunks_vlan(30));
        assert!(PortVlan::from_config(None, None, &[])
            .unwrap()
            .trunks_vlan(4095));
        // Native ports always trunk their VLAN, never VLAN 0.
        let native =
            PortVlan::from_config(Some(VlanMode::NativeUntagged), Some(10), &[0, 20]).unwrap();
        assert!(native.trunks_vlan(10) && native.trunks_vlan(20) && !native.trunks_vlan(0));
        assert!(native.accepts(0) && native.accepts(10) && !native.accepts(30));
        assert!(PortVlan::from_config(None, Some(4096), &[]).is_err());
        assert!(VlanMode::parse("dot1q-tunnel")
            .unwrap_err()
            .contains("not supported"));
        assert!(VlanMode::parse("accesss").unwrap_err().contains("accesss"));
    }

    #[test]
    fn reserved_addresses() {
        assert!(is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0]));
        assert!(is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0x0f]));
        assert!(!is_reserved(&[0x01, 0x80, 0xc2, 0, 0, 0x10]));
        assert!(is_reserved(&[0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xc3]));
        assert!(!is_reserved(&[0xff; 6]));
    }
}
