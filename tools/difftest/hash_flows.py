#!/usr/bin/env python3
"""hash_flows.py SEED N PORTS...

Prints N flows (ofproto/trace syntax) for each input port in PORTS, for
the cases of the actions that hash the flow (multipath, bundle): TCP, UDP,
SCTP, ICMP over IPv4 and IPv6, later fragments, VLAN-tagged, ARP and
non-IP frames, with addresses and ports drawn at random from SEED, so that
OVS's hash functions and link choices are compared on many flows.
"""
import random
import sys


def mac(r):
    return ":".join("%02x" % b for b in [r.randrange(0, 256) & 0xfe] + [r.randrange(256) for _ in range(5)])


def ip4(r):
    return "10.%d.%d.%d" % (r.randrange(256), r.randrange(256), r.randrange(1, 255))


def ip6(r):
    return "2001:db8::%x:%x" % (r.randrange(1, 0x10000), r.randrange(1, 0x10000))


def flow(r, port):
    l2 = "in_port=%d,dl_src=%s,dl_dst=%s" % (port, mac(r), mac(r))
    if r.random() < 0.15:
        l2 += ",dl_vlan=%d" % r.randrange(1, 4095)
    kind = r.choice(["tcp", "tcp", "udp", "udp", "icmp", "sctp", "tcp6", "udp6", "frag", "arp", "eth"])
    sp, dp = r.randrange(1, 65536), r.randrange(1, 65536)
    if kind in ("tcp", "udp", "sctp"):
        ports = "tp_src=%d,tp_dst=%d" % (sp, dp) if kind != "udp" else "udp_src=%d,udp_dst=%d" % (sp, dp)
        if kind == "sctp":
            ports = "sctp_src=%d,sctp_dst=%d" % (sp, dp)
        return "%s,%s,nw_src=%s,nw_dst=%s,nw_ttl=64,%s" % (l2, kind, ip4(r), ip4(r), ports)
    if kind == "icmp":
        return "%s,icmp,nw_src=%s,nw_dst=%s,nw_ttl=64,icmp_type=8,icmp_code=0" % (l2, ip4(r), ip4(r))
    if kind in ("tcp6", "udp6"):
        ports = "tp_src=%d,tp_dst=%d" % (sp, dp) if kind == "tcp6" else "udp_src=%d,udp_dst=%d" % (sp, dp)
        return "%s,%s,ipv6_src=%s,ipv6_dst=%s,nw_ttl=64,%s" % (l2, kind, ip6(r), ip6(r), ports)
    if kind == "frag":
        proto = r.choice(["tcp", "udp"])
        return "%s,%s,nw_src=%s,nw_dst=%s,nw_ttl=64,nw_frag=later" % (l2, proto, ip4(r), ip4(r))
    if kind == "arp":
        return "%s,arp,arp_spa=%s,arp_tpa=%s,arp_op=1" % (l2, ip4(r), ip4(r))
    return "%s,dl_type=0x88b5" % l2


def main():
    seed, n = int(sys.argv[1]), int(sys.argv[2])
    r = random.Random(seed)
    for port in sys.argv[3:]:
        for _ in range(n):
            print(flow(r, int(port)))


if __name__ == "__main__":
    main()
