//! Zones' conntrack timeout policies on the kernel datapath: the
//! cttimeout objects OVS's `dpif_netlink_ct_set_timeout_policy` creates
//! (`ovs_tp_<id>_<proto><4|6>`, one per family and protocol), made
//! through nfnetlink at start, before any flow names them.

use std::collections::BTreeMap;
use std::io;

use messages::netlink::cttimeout::{
    ack_errno, attr, new_policy_request, policy_name, AF_INET, NETLINK_NETFILTER, POLICY_PROTOCOLS,
};
use netlink_sys::Socket;

use crate::dpif_netdev::conntrack::ZoneTimeouts;

/// The kernel attributes a zone policy sets for protocol `l4num`, from
/// OVS's keys (`CT_DPIF_NL_TP_*_MAPPINGS`): what the policy leaves out,
/// and `udp_first`/`icmp_reply`, which the kernel has no timeout for, are
/// the kernel's defaults.
fn kernel_timeouts(z: &ZoneTimeouts, l4num: u8) -> Vec<(u16, u32)> {
    let pairs: Vec<(u16, Option<u32>)> = match l4num {
        6 => vec![
            (attr::TCP_SYN_SENT, z.tcp_syn_sent),
            (attr::TCP_SYN_RECV, z.tcp_syn_recv),
            (attr::TCP_ESTABLISHED, z.tcp_established),
            (attr::TCP_FIN_WAIT, z.tcp_fin_wait),
            (attr::TCP_TIME_WAIT, z.tcp_time_wait),
            (attr::TCP_CLOSE, z.tcp_close),
        ],
        17 => vec![
            (attr::UDP_UNREPLIED, z.udp_single),
            (attr::UDP_REPLIED, z.udp_multiple),
        ],
        _ => vec![(attr::ICMP_TIMEOUT, z.icmp_first)],
    };
    pairs
        .into_iter()
        .filter_map(|(a, v)| v.map(|v| (a, v)))
        .collect()
}

/// Creates (or updates) the kernel's objects for each policy id's zone
/// policy. An error names the object and why; a kernel without
/// conntrack timeout support (`nfnetlink_cttimeout` not loaded) is told
/// so.
pub fn set_timeout_policies(policies: &BTreeMap<u32, ZoneTimeouts>) -> Result<(), String> {
    if policies.is_empty() {
        return Ok(());
    }
    let io_err = |e: io::Error| format!("conntrack timeout policies: nfnetlink socket: {e}");
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io_err)?;
    socket.bind_auto().map_err(io_err)?;
    let mut seq = 1u32;
    let mut buf = Vec::with_capacity(8192);
    for (&id, zone) in policies {
        for (l3num, l4num) in POLICY_PROTOCOLS {
            let dl_type = if l3num == AF_INET { 0x0800 } else { 0x86dd };
            let Some(name) = policy_name(id, dl_type, l4num) else {
                continue;
            };
            let req = new_policy_request(seq, &name, l3num, l4num, &kernel_timeouts(zone, l4num));
            socket.send(&req, 0).map_err(io_err)?;
            let errno = loop {
                buf.clear();
                socket.recv(&mut buf, 0).map_err(io_err)?;
                if let Some(e) = ack_errno(&buf, seq) {
                    break e;
                }
            };
            seq += 1;
            match errno {
                0 => {}
                libc::ENOENT | libc::EOPNOTSUPP => {
                    return Err(format!(
                        "conntrack timeout policy {name}: the kernel has no conntrack \
                         timeout support (load the nfnetlink_cttimeout module)"
                    ))
                }
                e => {
                    return Err(format!(
                        "conntrack timeout policy {name}: the kernel refused it: {}",
                        io::Error::from_raw_os_error(e)
                    ))
                }
            }
        }
    }
    Ok(())
}
