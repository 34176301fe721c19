#!/usr/bin/env python3
"""tunnel_trace.py: differential tests of tunnel pipelines (VXLAN and
Geneve ports, tun_* fields, Geneve TLV maps) against OVS 3.1's
ofproto/trace on the dummy datapath.

    tunnel_trace.py record OVSDIR CASEDIR...   write CASEDIR/expected.tsv from OVS
    tunnel_trace.py compare UPCALLD CASEDIR... compare `upcalld trace` with it

A case directory holds `bridge.toml` (upcalld's config: the bridge's
[[port]]s, tunnel ports with their options, `tlv_map`), `rules.of13`
(ovs-ofctl add-flows syntax, added over OpenFlow 1.3) or `rules.of10`
(added over OpenFlow 1.0, for Nicira actions such as set_tunnel that
1.2+ would carry as set_field), optionally `setup.txt` (`add-group SPEC`
lines, added before the rules) and `flows.txt` (ofproto/trace
flows, one a line). `expected.tsv` is `flow<TAB>actions<TAB>megaflow` per
flow, as `upcalld trace --flows` prints it.

Recording starts a fresh OVS in OVSDIR for each case (ovs-peer's ovs-up.sh
with no ports), adds the case's ports (system ports as dummy ports, tunnel
ports with their options, OpenFlow numbers as ofport_request), turns
userspace tunnel push/pop off (`dpif/set-dp-features br0 tnl_push_pop
false`, as OVS's tests/tunnel.at does: outputs then are the kernel's
`set(tunnel(...))`) unless the case has a `[native_tunnel]` underlay (then,
as tests/tunnel-push-pop.at: the address on br0, routes, neighbours, and
outputs are `tnl_push(...)`), maps the TLVs, adds the rules and traces each flow.
"""
import ipaddress
import os
import subprocess
import sys
import time
import tomllib

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "../../../shared/tools/ovs-peer")


def rules_of(case):
    """The case's rules file and the OpenFlow version to add them with."""
    of10 = os.path.join(case, "rules.of10")
    if os.path.exists(of10):
        return of10, "OpenFlow10"
    return os.path.join(case, "rules.of13"), "OpenFlow13"


def flows_of(case):
    with open(os.path.join(case, "flows.txt")) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def ovs(env, *args, check=True):
    r = subprocess.run(list(args), env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def port_args(p):
    name, num = p["name"], p["number"]
    kind = p.get("type", "system")
    args = ["--", "add-port", "br0", name, "--", "set", "Interface", name,
            "ofport_request=%d" % num]
    if kind in ("vxlan", "geneve"):
        args.append("type=" + kind)
        for opt in ("remote_ip", "local_ip", "key", "in_key", "out_key",
                    "dst_port", "tos", "ttl", "csum", "df_default"):
            if opt in p:
                v = p[opt]
                v = str(v).lower() if isinstance(v, bool) else str(v)
                args.append("options:%s=%s" % (opt, v))
    else:
        args.append("type=dummy")
    return args


def native_setup(env, native):
    """The underlay of a `[native_tunnel]` case, as OVS's
    tunnel-push-pop.at sets it up: the address on br0 (LOCAL), its subnet
    and the static routes in ovs-router, the static neighbours."""
    for addr in native["address"]:
        ovs(env, "ovs-appctl", "netdev-dummy/ip4addr", "br0", addr)
        ip, plen = addr.split("/")
        net = ipaddress.ip_network(addr, strict=False)
        ovs(env, "ovs-appctl", "ovs/route/add", str(net), "br0")
    for r in native.get("routes", []):
        ovs(env, "ovs-appctl", "ovs/route/add", r.split()[0], "br0",
            *r.split()[1:])
    for n in native.get("neighbours", []):
        ip, mac = n.split()
        ovs(env, "ovs-appctl", "tnl/neigh/set", "br0", ip, mac)


def record(ovsdir, cases):
    for case in cases:
        with open(os.path.join(case, "bridge.toml"), "rb") as f:
            bridge = tomllib.load(f)
        subprocess.run([os.path.join(PEER, "ovs-down.sh"), ovsdir],
                       capture_output=True)
        subprocess.run([os.path.join(PEER, "ovs-up.sh"), ovsdir, "0"],
                       check=True, capture_output=True)
        env = dict(os.environ, OVS_RUNDIR=ovsdir, OVS_LOGDIR=ovsdir,
                   OVS_DBDIR=ovsdir, OVS_SYSCONFDIR=ovsdir)
        args = ["ovs-vsctl", "--timeout=30"]
        for p in bridge.get("port", []):
            args += port_args(p)
        ovs(env, *args)
        native = bridge.get("native_tunnel")
        if native:
            native_setup(env, native)
        else:
            ovs(env, "ovs-appctl", "dpif/set-dp-features", "br0",
                "tnl_push_pop", "false")
        tlv = bridge.get("tlv_map", [])
        if tlv:
            ovs(env, "ovs-ofctl", "add-tlv-map", "br0", ",".join(tlv))
        rules, version = rules_of(case)
        for line in setup_of(case):
            command, spec = line.split(None, 1)
            ovs(env, "ovs-ofctl", "-O", version, command, "br0", spec)
        ovs(env, "ovs-ofctl", "-O", version, "add-flows", "br0", rules)
        time.sleep(0.3)
        out = []
        for flow in flows_of(case):
            text = ovs(env, "ovs-appctl", "ofproto/trace", "br0", flow,
                       check=False)
            actions = megaflow = ""
            for line in text.splitlines():
                if line.startswith("Megaflow: "):
                    megaflow = line[len("Megaflow: "):]
                elif line.startswith("Datapath actions: "):
                    actions = line[len("Datapath actions: "):]
            out.append("%s\t%s\t%s\n" % (flow, actions, megaflow))
        with open(os.path.join(case, "expected.tsv"), "w") as f:
            f.writelines(out)
        print("%s: %d flows" % (case, len(out)))
    subprocess.run([os.path.join(PEER, "ovs-down.sh"), ovsdir],
                   capture_output=True)


def setup_of(case):
    """The case's `setup.txt` lines (`add-group SPEC`), if it has one."""
    path = os.path.join(case, "setup.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def compare(upcalld, cases):
    bad = total = 0
    for case in cases:
        setup = os.path.join(case, "setup.txt")
        r = subprocess.run(
            [upcalld, "trace", "--config", os.path.join(case, "bridge.toml"),
             "--rules", rules_of(case)[0],
             "--flows", os.path.join(case, "flows.txt")]
            + (["--setup", setup] if os.path.exists(setup) else []),
            capture_output=True, text=True)
        ours = r.stdout.splitlines()
        with open(os.path.join(case, "expected.tsv")) as f:
            theirs = f.read().splitlines()
        for o, t in zip(ours, theirs):
            total += 1
            if o != t:
                bad += 1
                print("%s\n  ovs:     %s\n  upcalld: %s" % (case, t, o))
        if len(ours) != len(theirs):
            bad += 1
            print("%s: %d lines vs %d (%s)" % (case, len(ours), len(theirs),
                                             r.stderr.strip()))
    print("%d of %d agree" % (total - bad, total))
    return bad == 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("record", "compare"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "record":
        record(os.path.abspath(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3:]) else 1)
