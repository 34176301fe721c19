//! Arbitrary bytes through every place a tunnel packet or key is read
//! from outside: the VXLAN/Geneve header of a received datagram
//! (`tunnel::decap`), a whole outer frame popped by native tunnelling
//! (`native_tunnel::pop`), and a kernel upcall's `OVS_KEY_ATTR_TUNNEL`
//! (`tunnel_from_attrs`). Beyond "no panic", it checks:
//!
//! - a header that decapsulates says where the inner frame starts, within
//!   the payload, and the header `encap_header` writes for the tunnel it
//!   gave decapsulates to the same tunnel at its own length;
//! - a popped frame is shorter by its outer headers, and its tunnel has
//!   the outer IPv4 addresses;
//! - a tunnel key that parses gives a tunnel that `tunnel_attrs` writes
//!   back to the same tunnel.
//!
//! The first byte chooses the tunnel type, VXLAN's Group Policy extension
//! (`exts=gbp`) and the path; the rest is the
//! input. The TLV map holds options of 4, 8 and 16 bytes, one of them of a
//! critical type.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use messages::flow::Flow;
use messages::native_tunnel::pop;
use messages::netlink::consts::OVS_KEY_ATTR_TUNNEL;
use messages::netlink::KeyAttr;
use messages::tlv::TlvMap;
use messages::tunnel::{decap, encap_header, tunnel_attrs, tunnel_from_attrs, TunnelKind};

fn map() -> &'static TlvMap {
    static MAP: OnceLock<TlvMap> = OnceLock::new();
    MAP.get_or_init(|| {
        TlvMap::from_text(
            "{class=0xffff,type=0,len=4}->tun_metadata0,\
             {class=0x0102,type=0x80,len=8}->tun_metadata1,\
             {class=0x0103,type=5,len=16}->tun_metadata2",
        )
        .expect("the fuzz map parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let kind = if selector & 1 == 0 {
        TunnelKind::Vxlan
    } else {
        TunnelKind::Geneve
    };
    let gbp = selector & 2 != 0;
    match (selector >> 2) % 3 {
        0 => check_decap(kind, gbp, input),
        1 => check_pop(kind, input),
        _ => check_key(input),
    }
});

fn check_decap(kind: TunnelKind, gbp: bool, payload: &[u8]) {
    let mut flow = Flow::default();
    let Ok(off) = decap(kind, gbp, payload, map(), &mut flow) else {
        return;
    };
    assert!(off <= payload.len(), "inner frame within the payload");
    let header = encap_header(kind, gbp, &flow, map());
    let mut again = Flow::default();
    let got = decap(kind, gbp, &header, map(), &mut again).expect("our own header decapsulates");
    assert_eq!(got, header.len());
    assert_eq!(again.tunnel_bytes(), flow.tunnel_bytes(), "{kind:?} {header:02x?}");
}

fn check_pop(kind: TunnelKind, frame: &[u8]) {
    let mut popped = frame.to_vec();
    let mut md = Flow::default();
    if pop(kind, &mut popped, map(), &mut md).is_ok() {
        assert!(popped.len() < frame.len(), "the outer headers are gone");
        assert_eq!(md.tun_src.to_be_bytes(), frame[26..30]);
        assert_eq!(md.tun_dst.to_be_bytes(), frame[30..34]);
    }
}

fn check_key(attr: &[u8]) {
    let Ok(KeyAttr::Tunnel(attrs)) = KeyAttr::parse_payload(OVS_KEY_ATTR_TUNNEL, attr) else {
        return;
    };
    let mut flow = Flow::default();
    if tunnel_from_attrs(&attrs, map(), &mut flow).is_err() {
        return;
    }
    let mut again = Flow::default();
    tunnel_from_attrs(&tunnel_attrs(&flow, None, map()), map(), &mut again)
        .expect("our own tunnel attributes parse");
    assert_eq!(again.tunnel_bytes(), flow.tunnel_bytes());
}
