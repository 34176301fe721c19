#!/usr/bin/env python3
"""gen.py - random OpenFlow 1.3 rule sets and ofproto/trace flows in the style of the
oracle corpus (tiers t1, t2, t3) plus an extended style (x) that uses more match
fields and actions.

    gen.py OUTDIR STYLE SEED [NFLOWS]

writes OUTDIR/rules.of13 and OUTDIR/flows.txt.  As a module: gen_case(style, seed)
returns (rules, flows) as lists of strings.

Properties kept from the corpus: within a table every priority is unique (no
same-priority ties), goto_table only goes forward, ~55% of the flows are built to
hit a rule (with a path through table 0), ~20% are near-misses (one bit flipped in a
matched field) and ~25% are random packets; values come from small per-case pools.
"""
import os
import random
import sys

# leave out constructs whose differences are already known (LOCAL, CONTROLLER, missing ports,
# move, dec_ttl(ids), TTL expiry, resubmit loops) so that new classes stand out
KNOWN_OFF = os.environ.get('GEN_KNOWN_OFF') == '1'

ETH_IP, ETH_IPV6, ETH_ARP = 0x0800, 0x86dd, 0x0806
OTHER_ETHERTYPES = [0x88cc, 0x8809, 0x88b5, 0x88e5, 0x9000]
PROTO_CLASSES = {  # name -> (dl_type, nw_proto)
    'ip': (ETH_IP, None), 'tcp': (ETH_IP, 6), 'udp': (ETH_IP, 17), 'icmp': (ETH_IP, 1),
    'sctp': (ETH_IP, 132), 'ipv6': (ETH_IPV6, None), 'tcp6': (ETH_IPV6, 6),
    'udp6': (ETH_IPV6, 17), 'icmp6': (ETH_IPV6, 58), 'sctp6': (ETH_IPV6, 132),
    'arp': (ETH_ARP, None),
}
TCP_FLAG_NAMES = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr', 'ns']
FRAG = {'no': (0, 1), 'first': (1, 3), 'later': (3, 3), 'yes': (1, 1), 'not_later': (0, 2)}


def mac_str(v):
    return ':'.join('%02x' % ((v >> (8 * i)) & 0xff) for i in range(5, -1, -1))


def ip_str(v):
    return '.'.join(str((v >> (8 * i)) & 0xff) for i in range(3, -1, -1))


def ip6_str(v):
    import ipaddress
    return str(ipaddress.IPv6Address(v))


def prefix_mask(bits, width):
    return ((1 << bits) - 1) << (width - bits) if bits else 0


class Pools:
    """Small per-case value pools so that rules and flows share prefixes."""

    def __init__(self, r):
        self.r = r
        ouis = [r.choice([0x02, 0x0c, 0x2c, 0x64, 0xc0, 0x18]) << 16 | r.getrandbits(16)
                for _ in range(3)]
        self.macs = [(r.choice(ouis) << 24) | r.getrandbits(24) for _ in range(12)]
        self.macs += [0xffffffffffff, 0x01005e000000 | r.getrandbits(23), 0x333300000000 | r.getrandbits(32)]
        self.ip_bases = [(r.randrange(1, 224) << 24) | (r.getrandbits(16) << 8),
                         (10 << 24) | (r.getrandbits(8) << 16) | (r.getrandbits(8) << 8),
                         (172 << 24) | (r.randrange(16, 32) << 16) | (r.getrandbits(8) << 8),
                         (192 << 24) | (168 << 16) | (r.getrandbits(8) << 8)]
        self.ips = []
        for _ in range(24):
            b = r.choice(self.ip_bases)
            keep = r.choice([24, 24, 16, 16, 8])
            self.ips.append((b & prefix_mask(keep, 32)) | (r.getrandbits(32) & ~prefix_mask(keep, 32) & 0xffffffff))
        self.ip6_bases = [0x20010db8 << 96 | r.getrandbits(16) << 80,
                          (0xfd00 | r.getrandbits(8)) << 112 | r.getrandbits(16) << 96,
                          0xfe80 << 112]
        self.ip6s = []
        for _ in range(16):
            b = r.choice(self.ip6_bases)
            keep = r.choice([48, 64, 64, 32])
            low = r.choice([r.getrandbits(128), r.randrange(1, 20)])
            self.ip6s.append((b & prefix_mask(keep, 128)) | (low & ~prefix_mask(keep, 128) & ((1 << 128) - 1)))
        self.ports = r.sample([22, 53, 67, 68, 80, 123, 179, 443, 514, 5060, 8080, 8443], 7) + \
            [r.randrange(1024, 65536) for _ in range(4)]
        self.vlans = r.sample([1, 10, 30, 100, 200, 1955, 2000, 4094, 4095, 0], 5)
        self.regvals = r.sample([1, 2, 3, 4, 5, 6, 7, 8, 0x13, 0x22], 5)
        self.metas = [r.getrandbits(16) for _ in range(3)] + [r.getrandbits(64)]

    def mac(self):
        return self.r.choice(self.macs) if self.r.random() < 0.85 else self.r.getrandbits(48) & ~(1 << 40)

    def ip(self):
        return self.r.choice(self.ips) if self.r.random() < 0.8 else self.r.getrandbits(32)

    def ip6(self):
        return self.r.choice(self.ip6s) if self.r.random() < 0.8 else self.r.getrandbits(128)

    def port(self):
        return self.r.choice(self.ports) if self.r.random() < 0.6 else self.r.randrange(1024, 65536)


# ---------------------------------------------------------------- packets

def random_packet(p, r, cls=None, style='t1'):
    """A complete packet as a dict of field -> int (plus 'cls')."""
    if cls is None:
        v6 = style in ('t3', 'x')
        cls = r.choices(['tcp', 'udp', 'icmp', 'ip', 'tcp6', 'udp6', 'icmp6', 'arp', 'other', 'sctp', 'sctp6'],
                        [22, 14, 8, 3, 9 * v6, 6 * v6, 8 * v6, 0 if style == 't1' else 10, 5,
                         1 if style == 'x' else 0, 1 if style == 'x' else 0])[0]
    pk = {'in_port': r.randrange(1, 9), 'vlan_tci': 0, 'dl_src': p.mac(), 'dl_dst': p.mac()}
    if style != 't1' and r.random() < 0.5:
        pcp = 0 if r.random() < 0.7 else r.randrange(1, 8)
        pk['vlan_tci'] = 0x1000 | pcp << 13 | r.choice(p.vlans)
    if cls == 'other':
        pk['dl_type'] = r.choice(OTHER_ETHERTYPES)
        return pk
    dl_type, proto = PROTO_CLASSES[cls] if cls in PROTO_CLASSES else (None, None)
    pk['dl_type'] = dl_type
    if dl_type == ETH_ARP:
        pk['arp_op'] = r.choice([1, 1, 2, 2, 3])
        pk['arp_spa'] = p.ip()
        pk['arp_tpa'] = p.ip()
        pk['arp_sha'] = pk['dl_src']
        pk['arp_tha'] = 0 if pk['arp_op'] == 1 else p.mac()
        if pk['arp_op'] == 1 and r.random() < 0.5:
            pk['dl_dst'] = 0xffffffffffff
        return pk
    if proto is None:
        proto = r.choice([6, 17, 1 if dl_type == ETH_IP else 58, 47, 50])
    pk['nw_proto'] = proto
    if dl_type == ETH_IP:
        pk['nw_src'], pk['nw_dst'] = p.ip(), p.ip()
    else:
        pk['ipv6_src'], pk['ipv6_dst'] = p.ip6(), p.ip6()
        if r.random() < 0.25:
            pk['ipv6_label'] = r.getrandbits(20)
    pk['nw_tos'] = r.choice([0] * 6 + [32, 40, 184, 0x10] + ([1, 2, 3, 0x2e << 2 | 1] if style == 'x' else []))
    pk['nw_ttl'] = r.choice([64, 64, 128, 32, 255, r.randrange(8, 256)])
    if style == 'x' and r.random() < 0.1:
        pk['nw_ttl'] = r.choice([2] if KNOWN_OFF else [0, 1, 2])
    fr = r.random()
    pk['nw_frag'] = 0
    if fr < (0.15 if style in ('t3', 'x') else 0.0):
        pk['nw_frag'] = r.choice([1, 3])
    if pk['nw_frag'] == 3:
        return pk
    if proto in (6, 17, 132):
        pk['tp_src'], pk['tp_dst'] = (p.port(), r.randrange(1024, 65536)) if r.random() < 0.5 else \
            (r.randrange(1024, 65536), p.port())
        if proto == 6 and style != 't1':
            pk['tcp_flags'] = r.choice([0x002, 0x012, 0x010, 0x018, 0x011, 0x004, 0x014, 0x0c2, 0x001, r.getrandbits(12)])
    elif proto == 1:
        pk['icmp_type'], pk['icmp_code'] = r.choice([(8, 0), (0, 0), (3, 3), (3, 1), (11, 0), (13, 0), (5, 1)])
    elif proto == 58:
        t = r.choice([128, 129, 135, 135, 136, 136, 133, 134, 1, 3])
        pk['icmp_type'], pk['icmp_code'] = t, 0 if r.random() < 0.9 else r.randrange(1, 4)
        if t in (135, 136) and pk['icmp_code'] == 0:
            pk['nd_target'] = p.ip6()
            if t == 135 and r.random() < 0.6:
                pk['nd_sll'] = p.mac()
            if t == 136 and r.random() < 0.6:
                pk['nd_tll'] = p.mac()
    return pk


def packet_str(pk):
    out = ['in_port=%d' % pk['in_port']]
    tci = pk.get('vlan_tci', 0)
    if tci & 0x1000:
        out.append('dl_vlan=%d' % (tci & 0xfff))
        if tci >> 13:
            out.append('dl_vlan_pcp=%d' % (tci >> 13))
    out.append('dl_src=' + mac_str(pk['dl_src']))
    out.append('dl_dst=' + mac_str(pk['dl_dst']))
    out.append('dl_type=0x%04x' % pk['dl_type'])
    dt = pk['dl_type']
    if dt == ETH_ARP:
        out += ['arp_op=%d' % pk['arp_op'], 'arp_spa=' + ip_str(pk['arp_spa']), 'arp_tpa=' + ip_str(pk['arp_tpa']),
                'arp_sha=' + mac_str(pk['arp_sha']), 'arp_tha=' + mac_str(pk['arp_tha'])]
        return ','.join(out)
    if dt not in (ETH_IP, ETH_IPV6):
        return ','.join(out)
    if dt == ETH_IP:
        out += ['nw_src=' + ip_str(pk['nw_src']), 'nw_dst=' + ip_str(pk['nw_dst'])]
    else:
        out += ['ipv6_src=' + ip6_str(pk['ipv6_src']), 'ipv6_dst=' + ip6_str(pk['ipv6_dst'])]
        if pk.get('ipv6_label'):
            out.append('ipv6_label=0x%05x' % pk['ipv6_label'])
    out.append('nw_proto=%d' % pk['nw_proto'])
    if pk.get('nw_tos', 0) & 0xfc:
        out.append('nw_tos=%d' % (pk['nw_tos'] & 0xfc))
    if pk.get('nw_tos', 0) & 3:
        out.append('nw_ecn=%d' % (pk['nw_tos'] & 3))
    out.append('nw_ttl=%d' % pk['nw_ttl'])
    if pk.get('nw_frag'):
        out.append('nw_frag=' + ('later' if pk['nw_frag'] == 3 else 'first'))
        if pk['nw_frag'] == 3:
            return ','.join(out)
    proto = pk['nw_proto']
    if proto == 6:
        out += ['tp_src=%d' % pk['tp_src'], 'tp_dst=%d' % pk['tp_dst']]
        if 'tcp_flags' in pk:
            out.append('tcp_flags=0x%03x' % pk['tcp_flags'])
    elif proto == 17:
        out += ['udp_src=%d' % pk['tp_src'], 'udp_dst=%d' % pk['tp_dst']]
    elif proto == 132:
        out += ['sctp_src=%d' % pk['tp_src'], 'sctp_dst=%d' % pk['tp_dst']]
    elif proto == 1 and dt == ETH_IP:
        out += ['icmp_type=%d' % pk['icmp_type'], 'icmp_code=%d' % pk['icmp_code']]
    elif proto == 58 and dt == ETH_IPV6:
        out += ['icmpv6_type=%d' % pk['icmp_type'], 'icmpv6_code=%d' % pk['icmp_code']]
        if 'nd_target' in pk:
            out.append('nd_target=' + ip6_str(pk['nd_target']))
        if 'nd_sll' in pk:
            out.append('nd_sll=' + mac_str(pk['nd_sll']))
        if 'nd_tll' in pk:
            out.append('nd_tll=' + mac_str(pk['nd_tll']))
    return ','.join(out)


# ---------------------------------------------------------------- rule matches

class Match:
    """A rule match: protocol class + constraints (packet field, value, mask) + text."""

    def __init__(self, cls):
        self.cls = cls          # None (L2 only), a PROTO_CLASSES key, or 'dl_type=0x....'
        self.cons = []          # (field, value, mask)
        self.text = []          # ovs-ofctl terms, in order
        self.shorthand = True

    def add(self, field, value, mask, text):
        self.cons.append((field, value, mask))
        self.text.append(text)

    def dl_type(self):
        if self.cls is None:
            return None
        if self.cls.startswith('dl_type='):
            return int(self.cls.split('=')[1], 16)
        return PROTO_CLASSES[self.cls][0]

    def nw_proto(self):
        return PROTO_CLASSES[self.cls][1] if self.cls in PROTO_CLASSES else None

    def render(self):
        head = []
        if self.cls is not None:
            if self.cls.startswith('dl_type='):
                head = [self.cls]
            elif self.shorthand and self.cls != 'sctp6':
                head = [self.cls]
            else:
                dt, proto = PROTO_CLASSES[self.cls]
                head = ['dl_type=0x%04x' % dt] + (['nw_proto=%d' % proto] if proto is not None else [])
        return head + self.text


def gen_match(p, r, style, table, allow_l2_only=True):
    ext = style == 'x'
    weights = {'l2': 12 if allow_l2_only else 0, 'ip': 12, 'tcp': 12, 'udp': 8, 'icmp': 5}
    if style in ('t2', 't3', 'x'):
        weights['arp'] = 6
    if style in ('t3', 'x'):
        weights.update({'ipv6': 10, 'tcp6': 6, 'udp6': 4, 'icmp6': 8})
    if ext:
        weights.update({'sctp': 2, 'sctp6': 1, 'other': 2})
    kind = r.choices(list(weights), list(weights.values()))[0]
    if kind == 'l2':
        m = Match(None)
    elif kind == 'other':
        m = Match('dl_type=0x%04x' % r.choice(OTHER_ETHERTYPES + [0x8100]))
    else:
        m = Match(kind)
        m.shorthand = r.random() < 0.6
    dt, proto = m.dl_type(), m.nw_proto()
    cands = []  # (weight, adder)

    def f_in_port():
        m.add('in_port', v := r.randrange(1, 9), 0xffff, 'in_port=%d' % v)

    def f_mac(name):
        def go():
            v = p.mac()
            c = r.random()
            if c < 0.7:
                m.add(name, v, (1 << 48) - 1, '%s=%s' % (name, mac_str(v)))
            elif c < 0.85:
                mk = 0x010000000000
                v = r.choice([0, mk])
                m.add(name, v, mk, '%s=%s/%s' % (name, mac_str(v), mac_str(mk)))
            else:
                mk = r.choice([0xffffff000000, 0xffffffff0000] + ([0xfeffffffffff, 0x0000ffffffff] if ext else []))
                m.add(name, v & mk, mk, '%s=%s/%s' % (name, mac_str(v & mk), mac_str(mk)))
        return go

    def f_ip4(name, pkf):
        def go():
            v = p.ip()
            bits = r.choice([32, 32, 8, 12, 16, 20, 24, 28] + ([1, 3, 31] if ext else []))
            mk = prefix_mask(bits, 32)
            if ext and r.random() < 0.08:
                mk = r.choice([0xff00ff00, 0x0000ffff, 0xfffffffe])
                m.add(pkf, v & mk, mk, '%s=%s/%s' % (name, ip_str(v & mk), ip_str(mk)))
            elif bits == 32:
                m.add(pkf, v, mk, '%s=%s' % (name, ip_str(v)))
            else:
                m.add(pkf, v & mk, mk, '%s=%s/%d' % (name, ip_str(v & mk), bits))
        return go

    def f_ip6(name):
        def go():
            v = p.ip6()
            bits = r.choice([128, 128, 32, 48, 64] + ([1, 16, 96, 127] if ext else []))
            mk = prefix_mask(bits, 128)
            if bits == 128:
                m.add(name, v, mk, '%s=%s' % (name, ip6_str(v)))
            else:
                m.add(name, v & mk, mk, '%s=%s/%d' % (name, ip6_str(v & mk), bits))
        return go

    def f_port(name):
        def go():
            v = p.port()
            if r.random() < 0.65:
                m.add(name, v, 0xffff, '%s=%d' % (name, v))
            else:
                mk = r.choice([0xf000, 0xff00, 0xfff0] + ([0xfffe, 0x8000, 0x00ff] if ext else []))
                m.add(name, v & mk, mk, '%s=0x%x/0x%x' % (name, v & mk, mk))
        return go

    def f_icmp_type():
        if proto == 1:
            v = r.choice([8, 0, 3, 11, 13, 5])
        else:
            v = r.choice([128, 129, 135, 136, 135, 136, 133, 1])
        m.add('icmp_type', v, 0xff, 'icmp_type=%d' % v)
        if proto == 58 and v in (135, 136) and r.random() < 0.75:
            t = p.ip6()
            if ext and r.random() < 0.2:
                mk = prefix_mask(64, 128)
                m.add('nd_target', t & mk, mk, 'nd_target=%s/64' % ip6_str(t & mk))
            else:
                m.add('nd_target', t, (1 << 128) - 1, 'nd_target=%s' % ip6_str(t))
            if r.random() < (0.35 if ext else 0.15):
                name = 'nd_sll' if v == 135 else 'nd_tll'
                mv = p.mac()
                m.add(name, mv, (1 << 48) - 1, '%s=%s' % (name, mac_str(mv)))
        if r.random() < 0.2:
            c = r.choice([0, 1, 3])
            m.add('icmp_code', c, 0xff, 'icmp_code=%d' % c)

    def f_icmp_code():
        c = r.choice([0, 1, 3])
        m.add('icmp_code', c, 0xff, 'icmp_code=%d' % c)

    def f_tcp_flags():
        if r.random() < 0.6:
            fl = r.sample(TCP_FLAG_NAMES[:5] if not ext else TCP_FLAG_NAMES, r.choice([1, 1, 2]))
            val = mk = 0
            txt = ''
            for f in fl:
                bit = 1 << TCP_FLAG_NAMES.index(f)
                on = r.random() < 0.6
                mk |= bit
                val |= bit if on else 0
                txt += ('+' if on else '-') + f
            m.add('tcp_flags', val, mk, 'tcp_flags=' + txt)
        else:
            mk = r.choice([0x010, 0x012, 0x002, 0x017, 0x0ff, 0xfff])
            val = r.getrandbits(12) & mk
            m.add('tcp_flags', val, mk, 'tcp_flags=0x%03x/0x%03x' % (val, mk))

    def f_frag():
        name = r.choice(list(FRAG))
        v, mk = FRAG[name]
        m.add('nw_frag', v, mk, 'nw_frag=' + name)

    def f_arp_ip(name):
        return f_ip4(name, name)

    def f_arp_op():
        v = r.choice([1, 2])
        m.add('arp_op', v, 0xffff, 'arp_op=%d' % v)

    def f_vlan():
        c = r.random()
        if c < 0.45:
            v = r.choice(p.vlans)
            m.add('vlan_tci', 0x1000 | v, 0x1fff, 'dl_vlan=%d' % v)
        elif c < 0.6:
            v = r.randrange(0, 8)
            m.add('vlan_tci', 0x1000 | v << 13, 0xf000, 'dl_vlan_pcp=%d' % v)
        elif c < 0.75:
            m.add('vlan_tci', 0x1000, 0x1000, 'vlan_tci=0x1000/0x1000')
        elif c < 0.88:
            m.add('vlan_tci', 0, 0x1000, 'vlan_tci=0x0000/0x1000')
        else:
            v = 0x1000 | r.choice(p.vlans) | r.randrange(8) << 13
            mk = r.choice([0xffff, 0x1fff, 0xefff, 0x1f00, 0x0fff, 0x00ff]) if ext else 0xffff
            m.add('vlan_tci', v & mk, mk, 'vlan_tci=0x%04x/0x%04x' % (v & mk, mk))

    def f_vlan_pcp_only():
        v = r.randrange(0, 8)
        m.add('vlan_tci', 0x1000 | v << 13, 0xf000, 'dl_vlan_pcp=%d' % v)

    def f_tos():
        c = r.random()
        if c < 0.4:
            v = r.choice([0, 32, 40, 184, 16])
            m.add('nw_tos', v, 0xfc, 'nw_tos=%d' % v)
        elif c < 0.7:
            v = r.choice([0, 8, 10, 46, 4])
            m.add('nw_tos', v << 2, 0xfc, 'ip_dscp=%d' % v)
        else:
            v = r.randrange(4)
            m.add('nw_tos', v, 3, 'nw_ecn=%d' % v)

    def f_ttl():
        v = r.choice([64, 128, 255, 1, 32])
        m.add('nw_ttl', v, 0xff, 'nw_ttl=%d' % v)

    def f_label():
        v = r.getrandbits(20)
        if r.random() < 0.5:
            m.add('ipv6_label', v, 0xfffff, 'ipv6_label=0x%05x' % v)
        else:
            mk = r.choice([0xf0000, 0x000ff, 0xfffff])
            m.add('ipv6_label', v & mk, mk, 'ipv6_label=0x%05x/0x%05x' % (v & mk, mk))

    def f_arp_mac(name):
        def go():
            v = p.mac()
            m.add(name, v, (1 << 48) - 1, '%s=%s' % (name, mac_str(v)))
        return go

    def f_reg(name):
        def go():
            v = r.choice(p.regvals)
            if r.random() < 0.5:
                m.add(name, v, 0xffffffff, '%s=%d' % (name, v))
            else:
                mk = r.choice([0xf, 0xf] + ([0xff, 0x1, 0xf0] if ext else []))
                m.add(name, v & mk, mk, '%s=0x%x/0x%x' % (name, v & mk, mk))
        return go

    def f_meta():
        v = r.choice(p.metas)
        mk = r.choice([0xff, 0xff] + ([0xffff, 0xf0, (1 << 64) - 1] if ext else []))
        m.add('metadata', v & mk, mk, 'metadata=0x%x/0x%x' % (v & mk, mk))

    cands.append((3, f_in_port))
    if style != 't3' or r.random() < 0.3:
        cands.append((2, f_mac('dl_dst')))
        cands.append((1.5, f_mac('dl_src')))
    if style in ('t2', 'x'):
        cands.append((3 if dt is None else 1.5, f_vlan))
    if ext:
        cands.append((0.7, f_vlan_pcp_only))
    if dt == ETH_IP:
        cands += [(4, f_ip4('nw_dst', 'nw_dst')), (2.5, f_ip4('nw_src', 'nw_src'))]
        if style in ('t3', 'x'):
            cands.append((1, f_frag))
        if ext:
            cands += [(1, f_tos), (0.6, f_ttl)]
    if dt == ETH_IPV6:
        cands += [(4, f_ip6('ipv6_dst')), (3, f_ip6('ipv6_src')), (1, f_frag)]
        if ext:
            cands += [(1, f_tos), (0.6, f_ttl), (1, f_label)]
    if proto in (6, 17, 132):
        cands += [(4, f_port('tp_dst')), (2, f_port('tp_src'))]
    if proto == 6 and style in ('t3', 'x'):
        cands.append((2, f_tcp_flags))
    if proto in (1, 58):
        cands.append((5, f_icmp_type))
        if ext:
            cands.append((0.7, f_icmp_code))
    if dt == ETH_ARP:
        cands += [(3, f_arp_ip('arp_tpa')), (2, f_arp_op), (1.5, f_arp_ip('arp_spa')), (1, f_arp_mac('arp_sha'))]
        if style in ('t3', 'x'):
            cands.append((1, f_arp_mac('arp_tha')))
    if table > 0 and style in ('t3', 'x'):
        cands += [(4, f_reg('reg0')), (1.5, f_meta)]
        if ext:
            cands.append((0.8, f_reg('reg1')))
    n = r.choices([0, 1, 2, 3, 4], [1 if m.cls else 0, 5, 5, 3, 1])[0]
    if m.cls is None and n == 0:
        n = 1
    chosen = set()
    for _ in range(n):
        w, fns = zip(*cands)
        fn = r.choices(fns, w)[0]
        if fn in chosen:
            continue
        chosen.add(fn)
        fn()
    if m.cls is None and not m.cons:
        f_in_port()
    # ovs-ofctl's usual field order does not matter; keep in_port first like the corpus often does
    return m


# ---------------------------------------------------------------- actions

def gen_actions(p, r, style, m, table, ntables, nonterminal):
    """Returns (apply_actions list, instructions suffix list)."""
    ext = style == 'x'
    dt, proto = m.dl_type(), m.nw_proto()
    tagged = any(f == 'vlan_tci' and (mk & 0x1000) and (v & 0x1000) for f, v, mk in m.cons)
    frag_later = any(f == 'nw_frag' and v == 3 for f, v, mk in m.cons)
    acts = []

    def out():
        c = r.random()
        if ext and c < 0.06 and not KNOWN_OFF:
            return r.choice(['output:LOCAL', 'LOCAL', 'CONTROLLER', 'controller', 'output:CONTROLLER',
                             'output:NXM_NX_REG1[0..3]', 'output:9', 'output:65534'])
        if style != 't1' and c < 0.1:
            return r.choice(['in_port', 'output:in_port', 'IN_PORT'])
        return 'output:%d' % r.randrange(1, 9)

    mods = []
    mods.append(lambda: r.choice(['mod_dl_src:%s', 'set_field:%s->eth_src']) % mac_str(p.mac()))
    mods.append(lambda: r.choice(['mod_dl_dst:%s', 'set_field:%s->eth_dst']) % mac_str(p.mac()))
    if dt == ETH_IP:
        mods.append(lambda: r.choice(['mod_nw_src:%s', 'set_field:%s->ip_src']) % ip_str(p.ip()))
        mods.append(lambda: r.choice(['mod_nw_dst:%s', 'set_field:%s->ip_dst']) % ip_str(p.ip()))
    if proto in (6, 17) and not frag_later:
        pn = 'tcp' if proto == 6 else 'udp'
        mods.append(lambda: r.choice(['mod_tp_src:%d', 'set_field:%d->' + pn + '_src']) % p.port())
        mods.append(lambda: r.choice(['mod_tp_dst:%d', 'set_field:%d->' + pn + '_dst']) % p.port())
    if style != 't1':
        vl = [lambda: 'mod_vlan_vid:%d' % r.choice([v for v in p.vlans if 0 < v < 4095] or [10]),
              lambda: 'mod_vlan_pcp:%d' % r.randrange(8)]
        if tagged:
            vl.append(lambda: r.choice(['strip_vlan', 'pop_vlan']))
        vl.append(lambda: 'push_vlan:0x8100,set_field:%d->vlan_vid' % (4096 + r.choice([v for v in p.vlans if v < 4095] or [10])))
        mods += vl
        if dt in (ETH_IP, ETH_IPV6):
            mods.append(lambda: 'dec_ttl')
        if dt == ETH_IP:
            mods.append(lambda: 'mod_nw_tos:%d' % (r.randrange(64) << 2))
    if style in ('t3', 'x') and dt == ETH_IPV6:
        mods.append(lambda: 'set_field:%s->%s' % (ip6_str(p.ip6()), r.choice(['ipv6_src', 'ipv6_dst'])))
    if ext:
        if dt in (ETH_IP, ETH_IPV6):
            mods.append(lambda: r.choice(['mod_nw_ttl:%d' % r.choice([0, 1, 2, 64, 255]), 'mod_nw_ecn:%d' % r.randrange(4),
                                          'set_field:%d->ip_dscp' % r.randrange(64), 'set_field:%d->nw_ecn' % r.randrange(4),
                                          'set_field:%d->nw_ttl' % r.choice([1, 5, 64]), 'dec_ttl'] + ([] if KNOWN_OFF else ['dec_ttl(1,2)'])))
        if dt == ETH_IPV6:
            mods.append(lambda: 'set_field:0x%x->ipv6_label' % r.getrandbits(20))
            if proto == 58 and any(f == 'icmp_type' and v in (135, 136) for f, v, _ in m.cons):
                mods.append(lambda: 'set_field:%s->nd_target' % ip6_str(p.ip6()))
                if any(f == 'icmp_type' and v == 135 for f, v, _ in m.cons):
                    mods.append(lambda: 'set_field:%s->nd_sll' % mac_str(p.mac()))
                else:
                    mods.append(lambda: 'set_field:%s->nd_tll' % mac_str(p.mac()))
        if dt == ETH_ARP:
            mods.append(lambda: r.choice(['set_field:%s->arp_spa' % ip_str(p.ip()), 'set_field:%s->arp_tpa' % ip_str(p.ip()),
                                          'set_field:%s->arp_sha' % mac_str(p.mac()), 'set_field:%s->arp_tha' % mac_str(p.mac()),
                                          'set_field:%d->arp_op' % r.choice([1, 2]),
                                          'load:0x%x->NXM_OF_ARP_TPA[0..7]' % r.getrandbits(8)]))
        if proto in (6, 17, 132) and not frag_later:
            pn = {6: 'tcp', 17: 'udp', 132: 'sctp'}[proto]
            mods.append(lambda: 'set_field:%d->%s_%s' % (p.port(), pn, r.choice(['src', 'dst'])))
        if proto == 1 and not frag_later:
            mods.append(lambda: 'set_field:%d->icmp_type' % r.choice([0, 8, 3]))
        if tagged:
            mods.append(lambda: 'set_field:%d->vlan_pcp' % r.randrange(8))
            mods.append(lambda: 'set_field:%d->vlan_vid' % (4096 + r.choice(p.vlans)))
        mods.append(lambda: 'push_vlan:0x8100,set_field:%d->vlan_vid,push_vlan:0x8100,set_field:%d->vlan_vid'
                    % (4096 + r.choice(p.vlans), 4096 + r.choice(p.vlans)))
        mods.append(lambda: 'push_vlan:0x88a8,set_field:%d->vlan_vid' % (4096 + r.choice(p.vlans)))
        mods.append(lambda: 'load:0x%x->NXM_OF_ETH_SRC[0..15]' % r.getrandbits(16))
        mods.append(lambda: 'load:0x%x->NXM_OF_ETH_DST[40..47]' % r.getrandbits(8))
        if not KNOWN_OFF:
            mods.append(lambda: 'move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]')
        mods.append(lambda: 'set_field:%d->reg1' % r.randrange(1, 9))
        if dt == ETH_IP:
            mods.append(lambda: 'load:0x%x->NXM_OF_IP_DST[0..7]' % r.getrandbits(8))
            if not KNOWN_OFF:
                mods.append(lambda: 'move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[]')

    n = r.choices([1, 2, 3, 4, 5], [4, 5, 4, 2, 1])[0]
    if r.random() < 0.12 and not nonterminal:
        acts = ['drop']
    else:
        for _ in range(n):
            if r.random() < 0.5:
                acts.append(out())
            else:
                acts.append(r.choice(mods)())
    suffix = []
    if nonterminal:
        # dispatch to a later table
        tgt = r.randrange(table + 1, ntables)
        regs = []
        if style in ('t3', 'x') and table == 0:
            c = r.random()
            if c < 0.35:
                regs.append(r.choice(['set_field:%d->reg0', 'load:%d->NXM_NX_REG0[]']) % r.choice(p.regvals))
                if r.random() < 0.4:
                    regs.append(r.choice(['set_field:%d->reg1', 'load:0x%x->NXM_NX_REG1[0..7]']) % r.getrandbits(7))
            elif c < 0.55:
                mv = r.choice(p.metas)
                mk = r.choice([0xff, 0xffff, (1 << 64) - 1])
                if mk == (1 << 64) - 1:
                    suffix.append(r.choice(['write_metadata:0x%x' % mv, 'set_field:0x%x->metadata' % mv]))
                else:
                    suffix.append(r.choice(['write_metadata:0x%x/0x%x' % (mv & mk, mk), 'set_field:0x%x/0x%x->metadata' % (mv & mk, mk)]))
        if style in ('t3',) or r.random() < 0.5:
            acts = [a for a in acts if a != 'drop'] if r.random() < 0.7 else []
        acts = [a for a in acts if a != 'drop']
        if r.random() < 0.5 or style == 't1':
            acts = acts[:r.randrange(0, 3)]
        acts += regs
        if style == 't3' or r.random() < 0.5:
            # metadata writes need goto_table; set_field on metadata is an apply action
            wm = [s for s in suffix if s.startswith('write_metadata')]
            acts += [s for s in suffix if s.startswith('set_field')]
            return acts, wm + ['goto_table:%d' % tgt], tgt
        else:
            wm = [s for s in suffix if s.startswith('write_metadata')]
            acts += [s for s in suffix if s.startswith('set_field')]
            if wm:
                return acts, wm + ['goto_table:%d' % tgt], tgt
            if ext and r.random() < 0.25:
                pin = r.randrange(1, 9)
                acts.append(r.choice(['resubmit(%d,%d)' % (pin, tgt), 'resubmit(,%d)' % tgt]))
            else:
                acts.append('resubmit(,%d)' % tgt)
            if r.random() < 0.4:
                for _ in range(r.randrange(1, 3)):
                    acts.append(out() if r.random() < 0.6 else r.choice(mods)())
            return acts, [], tgt
    if ext:
        c = r.random()
        if c < 0.05 and not KNOWN_OFF:
            acts.append(r.choice(['resubmit(,0)', 'resubmit(,%d)' % table, 'resubmit(%d,0)' % r.randrange(1, 9)]))
        elif c < 0.1 and table + 1 < ntables:
            acts.append('resubmit(,%d)' % r.randrange(0, ntables))
        elif c < 0.16:
            suffix.append(r.choice(['write_actions(output:%d)' % r.randrange(1, 9),
                                    'write_actions(mod_dl_src:%s,output:%d)' % (mac_str(p.mac()), r.randrange(1, 9)),
                                    'clear_actions']))
            if table + 1 < ntables and r.random() < 0.5:
                suffix.append('goto_table:%d' % r.randrange(table + 1, ntables))
    if not acts and not suffix:
        acts = ['drop']
    return acts, suffix, None


# ---------------------------------------------------------------- cases

def gen_case(style, seed, nflows=40):
    r = random.Random('%s-%d' % (style, seed))
    p = Pools(r)
    if style == 't1':
        ntables, nrules = 1, r.randrange(9, 60)
    elif style == 't2':
        ntables, nrules = r.randrange(2, 5), r.randrange(17, 41)
    elif style == 't3':
        ntables, nrules = r.randrange(2, 4), r.randrange(15, 41)
    else:
        ntables, nrules = r.randrange(1, 4), r.randrange(8, 40)
    rules = []  # (table, priority, Match, acts, suffix, target_table)
    used_prio = {t: set() for t in range(ntables)}
    seen = set()
    per_table = [0] * ntables
    for i in range(nrules):
        table = 0 if ntables == 1 else (0 if r.random() < 0.45 or i == 0 else r.randrange(1, ntables))
        per_table[table] += 1
        m = gen_match(p, r, style, table)
        key = (table, tuple(m.render()))
        if key in seen:
            continue
        seen.add(key)
        while True:
            prio = r.choice([r.randrange(1, 500), r.randrange(1, 500), r.randrange(1, 40000)])
            if prio not in used_prio[table]:
                break
        used_prio[table].add(prio)
        nonterm = ntables > 1 and table < ntables - 1 and r.random() < (0.55 if table == 0 else 0.3)
        acts, suffix, tgt = gen_actions(p, r, style, m, table, ntables, nonterm)
        rules.append((table, prio, m, acts, suffix, tgt))
    # tables that nobody dispatches to still get a dispatcher; catch-alls
    for t in range(ntables):
        if r.random() < 0.6 and 0 not in used_prio[t]:
            used_prio[t].add(0)
            m = Match(None)
            if t < ntables - 1 and r.random() < 0.6:
                rules.append((t, 0, m, [], ['goto_table:%d' % (t + 1)], t + 1))
            else:
                rules.append((t, 0, m, r.choice([['drop'], ['output:%d' % r.randrange(1, 9)]]), [], None))
    lines = []
    for table, prio, m, acts, suffix, tgt in rules:
        lines.append('table=%d,priority=%d,%s%sactions=%s' % (
            table, prio, ','.join(m.render()), ',' if m.render() else '', ','.join(acts + suffix)))
    flows = [gen_flow(p, r, style, rules) for _ in range(nflows)]
    return lines, flows, rules


def merge_ok(a, b):
    da, db = a.dl_type(), b.dl_type()
    if da is not None and db is not None and da != db:
        return False
    pa, pb = a.nw_proto(), b.nw_proto()
    return pa is None or pb is None or pa == pb


def gen_flow(p, r, style, rules):
    c = r.random()
    if c >= 0.75 or not rules:
        return packet_str(random_packet(p, r, style=style))
    rule = r.choice(rules)
    table, m = rule[0], rule[2]
    ms = [m]
    if table > 0:
        disp = [x for x in rules if x[5] == table and merge_ok(x[2], m)]
        if disp:
            d = r.choice(disp)
            ms.insert(0, d[2])
            if d[0] > 0:
                d0 = [x for x in rules if x[5] == d[0] and merge_ok(x[2], d[2]) and merge_ok(x[2], m)]
                if d0:
                    ms.insert(0, r.choice(d0)[2])
    cls = None
    for mm in ms:
        if mm.cls is not None:
            cls = mm.cls
            if cls.startswith('dl_type='):
                cls = 'other'
            elif cls in ('ip', 'ipv6'):
                cls = None if False else cls
    if cls in ('ip', 'ipv6'):
        cls = r.choice(['tcp', 'udp', 'icmp', 'ip'] if cls == 'ip' else ['tcp6', 'udp6', 'icmp6', 'ipv6'])
    if cls == 'sctp6':
        cls = 'sctp6'
    pk = random_packet(p, r, cls=cls, style=style)
    if cls == 'other':
        for mm in ms:
            if mm.cls and mm.cls.startswith('dl_type='):
                pk['dl_type'] = mm.dl_type()
    cons = []
    for mm in ms:
        cons += mm.cons
    for f, v, mk in cons:
        if f in ('reg0', 'reg1', 'metadata'):
            continue
        if f == 'nw_frag':
            if 'nw_frag' in pk:
                pk['nw_frag'] = (pk['nw_frag'] & ~mk) | v
                if pk['nw_frag'] == 2:
                    pk['nw_frag'] = 0
            continue
        if f in ('tp_src', 'tp_dst', 'tcp_flags', 'icmp_type', 'icmp_code', 'nd_target', 'nd_sll', 'nd_tll') and \
                pk.get('nw_frag') == 3:
            continue
        cur = pk.get(f)
        if cur is None:
            if f in ('tcp_flags',) and pk.get('nw_proto') == 6:
                cur = 0
            elif f in ('nd_sll', 'nd_tll', 'nd_target') and pk.get('icmp_type') in (135, 136):
                cur = 0
            elif f == 'ipv6_label' and 'ipv6_src' in pk:
                cur = 0
            elif f in ('in_port', 'vlan_tci', 'dl_src', 'dl_dst'):
                cur = 0
            else:
                continue
        pk[f] = (cur & ~mk) | v
    # keep the packet self-consistent after constraints
    if pk.get('in_port', 1) == 0 or pk['in_port'] > 8:
        pk['in_port'] = r.randrange(1, 9)
    fix_packet(pk, r, p)
    if c >= 0.55:
        # near miss: flip one bit of a matched field
        flips = [(f, v, mk) for f, v, mk in cons if f in pk and mk and f not in ('nw_frag',)]
        if flips:
            f, v, mk = r.choice(flips)
            if r.random() < 0.6:
                bit = mk & -mk
            else:
                bits = [i for i in range(mk.bit_length()) if mk >> i & 1]
                bit = 1 << r.choice(bits)
            pk[f] ^= bit
            if f == 'in_port' and not 1 <= pk['in_port'] <= 8:
                pk['in_port'] ^= bit
            fix_packet(pk, r, p)
    return packet_str(pk)


def fix_packet(pk, r, p):
    if pk.get('dl_type') in (ETH_IP, ETH_IPV6) and pk.get('nw_frag') != 3:
        if pk['nw_proto'] in (6, 17, 132):
            pk.setdefault('tp_src', p.port())
            pk.setdefault('tp_dst', p.port())
        elif pk['nw_proto'] in (1, 58):
            pk.setdefault('icmp_type', 8 if pk['nw_proto'] == 1 else 128)
            pk.setdefault('icmp_code', 0)
    if pk.get('vlan_tci', 0) and not pk['vlan_tci'] & 0x1000:
        pk['vlan_tci'] = 0
    if pk.get('nw_proto') == 58 and pk.get('dl_type') == ETH_IPV6:
        t = pk.get('icmp_type')
        if t not in (135, 136) or pk.get('icmp_code'):
            for k in ('nd_target', 'nd_sll', 'nd_tll'):
                pk.pop(k, None)
        elif t == 135:
            pk.pop('nd_tll', None)
            pk.setdefault('nd_target', p.ip6())
        else:
            pk.pop('nd_sll', None)
            pk.setdefault('nd_target', p.ip6())
    if pk.get('nw_proto') == 6 and 'tcp_flags' in pk:
        pk['tcp_flags'] &= 0xfff
    if 'icmp_type' in pk:
        pk['icmp_type'] &= 0xff
        pk['icmp_code'] &= 0xff


def main():
    out, style, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    import os
    os.makedirs(out, exist_ok=True)
    lines, flows, _ = gen_case(style, seed, n)
    with open(os.path.join(out, 'rules.of13'), 'w') as f:
        f.write('# %s case seed %d: %d rules\n' % (style, seed, len(lines)))
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(out, 'flows.txt'), 'w') as f:
        f.write('\n'.join(flows) + '\n')


if __name__ == '__main__':
    main()
