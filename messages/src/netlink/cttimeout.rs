//! Conntrack timeout policies for the kernel (nfnetlink's cttimeout
//! subsystem, `linux/netfilter/nfnetlink_cttimeout.h`), as OVS's
//! `dpif-netlink` creates them for a zone's `CT_Zone` policy: one object
//! per address family and protocol, named `ovs_tp_<id>_<proto><4|6>`,
//! which a committing `ct` names in `OVS_CT_ATTR_TIMEOUT`. Messages only;
//! the socket is the kernel datapath's.

/// `NETLINK_NETFILTER`.
pub const NETLINK_NETFILTER: isize = 12;
/// `NFNL_SUBSYS_CTNETLINK_TIMEOUT`.
const NFNL_SUBSYS_CTNETLINK_TIMEOUT: u16 = 8;
/// `IPCTNL_MSG_TIMEOUT_NEW`.
const IPCTNL_MSG_TIMEOUT_NEW: u16 = 0;
const CTA_TIMEOUT_NAME: u16 = 1;
const CTA_TIMEOUT_L3PROTO: u16 = 2;
const CTA_TIMEOUT_L4PROTO: u16 = 3;
const CTA_TIMEOUT_DATA: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// The families and protocols OVS makes a policy object for, in its order.
pub const POLICY_PROTOCOLS: [(u16, u8); 6] = [
    (AF_INET, IPPROTO_TCP),
    (AF_INET, IPPROTO_UDP),
    (AF_INET, IPPROTO_ICMP),
    (AF_INET6, IPPROTO_TCP),
    (AF_INET6, IPPROTO_UDP),
    (AF_INET6, IPPROTO_ICMPV6),
];

/// The kernel's timeout attributes (`CTA_TIMEOUT_TCP_*`, `_UDP_*`,
/// `_ICMP_*`, `_ICMPV6_*`) that OVS's policy keys map to.
pub mod attr {
    pub const TCP_SYN_SENT: u16 = 1;
    pub const TCP_SYN_RECV: u16 = 2;
    pub const TCP_ESTABLISHED: u16 = 3;
    pub const TCP_FIN_WAIT: u16 = 4;
    pub const TCP_TIME_WAIT: u16 = 7;
    pub const TCP_CLOSE: u16 = 8;
    pub const UDP_UNREPLIED: u16 = 1;
    pub const UDP_REPLIED: u16 = 2;
    pub const ICMP_TIMEOUT: u16 = 1;
}

/// OVS's `dpif_netlink_format_tp_name`: the object a `ct` in a zone with
/// policy `id` names for a packet of `dl_type`/`nw_proto`, or None for a
/// protocol timeout policies do not cover (no timeout is named then).
pub fn policy_name(id: u32, dl_type: u16, nw_proto: u8) -> Option<String> {
    let proto = match nw_proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        _ => return None,
    };
    let family = match dl_type {
        0x0800 => "4",
        0x86dd if nw_proto != IPPROTO_ICMPV6 => "6",
        0x86dd => "",
        _ => return None,
    };
    Some(format!("ovs_tp_{id}_{proto}{family}"))
}

fn put_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// An `IPCTNL_MSG_TIMEOUT_NEW` request (create, or update an object of
/// the same name, family and protocol) for `name`, with `timeouts`
/// (attribute, seconds): what it leaves out the kernel takes from its
/// defaults, as for OVS's policies.
pub fn new_policy_request(
    seq: u32,
    name: &str,
    l3num: u16,
    l4num: u8,
    timeouts: &[(u16, u32)],
) -> Vec<u8> {
    let mut out = vec![0u8; 16];
    // struct nfgenmsg: family, version, res_id (big endian).
    out.extend_from_slice(&[0, 0, 0, 0]);
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    put_attr(&mut out, CTA_TIMEOUT_NAME, &cname);
    put_attr(&mut out, CTA_TIMEOUT_L3PROTO, &l3num.to_be_bytes());
    put_attr(&mut out, CTA_TIMEOUT_L4PROTO, &[l4num]);
    let mut data = Vec::new();
    for &(kind, secs) in timeouts {
        put_attr(&mut data, kind, &secs.to_be_bytes());
    }
    put_attr(&mut out, CTA_TIMEOUT_DATA | NLA_F_NESTED, &data);
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    let kind = (NFNL_SUBSYS_CTNETLINK_TIMEOUT << 8) | IPCTNL_MSG_TIMEOUT_NEW;
    out[4..6].copy_from_slice(&kind.to_ne_bytes());
    out[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out
}

/// The errno of the `NLMSG_ERROR` acknowledging request `seq` in `reply`
/// (0 for success), or None if `reply` holds no such acknowledgement.
pub fn ack_errno(reply: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while reply.len() >= at + 20 {
        let len = u32::from_ne_bytes(reply[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(reply[at + 4..at + 6].try_into().ok()?);
        let rseq = u32::from_ne_bytes(reply[at + 8..at + 12].try_into().ok()?);
        if len < 16 || at + len > reply.len() {
            return None;
        }
        // NLMSG_ERROR: a negative errno, then the request's header.
        if kind == 2 && rseq == seq {
            let err = i32::from_ne_bytes(reply[at + 16..at + 20].try_into().ok()?);
            return Some(-err);
        }
        at += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ovs_names() {
        assert_eq!(policy_name(1, 0x0800, 6).as_deref(), Some("ovs_tp_1_tcp4"));
        assert_eq!(policy_name(2, 0x86dd, 17).as_deref(), Some("ovs_tp_2_udp6"));
        assert_eq!(policy_name(3, 0x0800, 1).as_deref(), Some("ovs_tp_3_icmp4"));
        assert_eq!(
            policy_name(3, 0x86dd, 58).as_deref(),
            Some("ovs_tp_3_icmpv6")
        );
        assert_eq!(policy_name(1, 0x0800, 132), None);
    }

    #[test]
    fn a_request_is_a_well_formed_netlink_message() {
        let m = new_policy_request(
            7,
            "ovs_tp_1_udp4",
            AF_INET,
            17,
            &[(attr::UDP_UNREPLIED, 1000)],
        );
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 8 << 8);
        // name (4 + 14, padded to 20), l3 (8), l4 (8), data (4 + 8).
        assert_eq!(m.len(), 16 + 4 + 20 + 8 + 8 + 12);
        assert_eq!(&m[24..37], b"ovs_tp_1_udp4");
        assert_eq!(&m[m.len() - 4..], &1000u32.to_be_bytes());
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&2u16.to_ne_bytes());
        ack[8..12].copy_from_slice(&7u32.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack, 7), Some(2));
        assert_eq!(ack_errno(&ack, 8), None);
        assert_eq!(ack_errno(&ack[..10], 7), None);
    }
}
