#!/usr/bin/env python3
"""ovs_at_sweep.py: Open vSwitch's own test suite as a differential corpus.

    ovs_at_sweep.py record OVS_GIT OUT [--tag v3.1.0] [--files ofproto-dpif,...] [--match RE]
    ovs_at_sweep.py compare UPCALLD OUT [--match RE] [--show N]

`record` takes every test (AT_SETUP ... AT_CLEANUP) of the named
`tests/*.at` files at the tag that runs `ofproto/trace` or sends packets
in (`netdev-dummy/receive`, each traced first), turns its body into
a bash script (the autotest/m4 macros the OVS tests use: AT_CHECK, AT_DATA,
OVS_VSWITCHD_START, add_of_ports, OVS_WAIT_UNTIL, ...) and runs it against a
fresh OVS 3.1 on the dummy datapath (../shared/tools/ovs-peer's ovs-up.sh,
bridge br0 as OVS's tests make it), so shell loops, variables and files work
as in the real suite. `ovs-ofctl` and `ovs-appctl` are wrapped: every
ovs-ofctl call (arguments, the files it names as they were then, exit
status) and every `ofproto/trace` (arguments, output, br0's ports) is logged
to OUT/TEST/log. Nothing of OVS's source is written, only what the tests
did on the live OVS.

`compare` replays each log: the state of br0 is what the successful
`add-flow(s)`, `add-group(s)`, `add-meter`, `add-tlv-map` and plain
`del-flows`/`del-groups`/`del-meters` calls left; every trace is run on
`upcalld trace --rules R --setup S --ports P FLOW` with the flow OVS printed
in its `Flow:` line (so ODP-syntax trace flows are compared too), and its
`Datapath actions:`/`Megaflow:` lines compared with OVS's (megaflow as a set
of terms, as ../shared/oracle/compare.py; recirculation ids renamed in
order of appearance). Per trace and per test it tabulates: identical;
different (which line); refused by us (which rule or flow, our error);
refused by OVS too (OVS's trace failed); not modelled (what the replay
cannot follow: mod-flows, bridge configuration through ovs-vsctl, a second
bridge, tunnel or patch ports, learn/NORMAL after packets or `-generate`,
controller actions while `ovs-ofctl monitor` is connected). Every
`add-flow(s)` OVS refused is tried on `upcalld trace --rules` too. Prints
the tally and writes OUT/results.jsonl.
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

PEER = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "../../../shared/tools/ovs-peer"))
FILES = ["ofproto-dpif", "ofproto", "tunnel", "tunnel-push-pop", "mpls-xlate"]

# --------------------------------------------------------------------------
# m4/autotest -> bash

QUADRIGRAPHS = [("@<:@", "["), ("@:>@", "]"), ("@S|@", "$"), ("@%:@", "#"), ("@&t@", "")]
IGNORED_MACROS = {
    "AT_SETUP", "AT_CLEANUP", "AT_KEYWORDS", "AT_CAPTURE_FILE", "AT_XFAIL_IF", "AT_BANNER",
    "OVS_VSWITCHD_STOP", "OVS_APP_EXIT_AND_WAIT", "OVS_APP_EXIT_AND_WAIT_BY_TARGET",
    "WAIT_FOR_DUMMY_PORTS", "OVS_WAIT_FOR_OUTPUT", "AT_FAIL_IF", "OVS_CHECK_LOGS",
}


def split_tests(text):
    """(name, body) for every AT_SETUP([name]) ... AT_CLEANUP."""
    out = []
    for m in re.finditer(r"^AT_SETUP\(\[(.*?)\]\)\n(.*?)^AT_CLEANUP", text, re.S | re.M):
        out.append((m.group(1), m.group(2)))
    return out


def macro_args(s, i):
    """Collects the m4 arguments of a macro call whose '(' is at s[i].
    Returns (raw arguments, each still quoted once, index after ')')."""
    args, cur, depth, quote = [], [], 0, 0
    i += 1
    skipping_ws = True
    while i < len(s):
        c = s[i]
        if skipping_ws and c in " \t\n" and quote == 0:
            i += 1
            continue
        skipping_ws = False
        if c == "[":
            quote += 1
        elif c == "]":
            quote -= 1
        elif quote == 0 and c == "(":
            depth += 1
        elif quote == 0 and c == ")":
            if depth == 0:
                args.append("".join(cur))
                return args, i + 1
            depth -= 1
        elif quote == 0 and depth == 0 and c == ",":
            args.append("".join(cur))
            cur = []
            skipping_ws = True
            i += 1
            continue
        cur.append(c)
        i += 1
    raise ValueError("unterminated macro call")


def dequote(s):
    """Strips one level of m4 quotes."""
    out, quote = [], 0
    for c in s:
        if c == "[":
            quote += 1
            if quote == 1:
                continue
        elif c == "]":
            quote -= 1
            if quote == 0:
                continue
        out.append(c)
    return "".join(out)


def quadrigraphs(s):
    for q, r in QUADRIGRAPHS:
        s = s.replace(q, r)
    return s


def file_macros(text):
    """NAME -> body (quotes stripped once) of every top-level m4_define of
    a test file (OFPROTO_TRACE and the like)."""
    defs = {}
    for m in re.finditer(r"^m4_define\(\[([A-Za-z_0-9]+)\]", text, re.M):
        try:
            args, _ = macro_args(text, m.start() + len("m4_define"))
        except ValueError:
            continue
        if len(args) > 1:
            defs[m.group(1)] = dequote(args[1])
    return defs


class Converter:
    def __init__(self, defs):
        self.defs = defs
        self.unknown = []
        self.heredoc = 0

    def arg(self, raw):
        """A macro argument as the shell sees it: quotes stripped, then
        rescanned (a second level of quotes, dnl, macros)."""
        return self.expand(dequote(raw))

    def expand(self, s):
        out, i = [], 0
        while i < len(s):
            c = s[i]
            if c == "[":
                # quoted text: one level off, macros not expanded
                depth, j = 0, i
                while j < len(s):
                    if s[j] == "[":
                        depth += 1
                    elif s[j] == "]":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                out.append(s[i + 1:j])
                i = j + 1
                continue
            if c == "#":
                j = s.find("\n", i)
                j = len(s) if j < 0 else j
                out.append(s[i:j])
                i = j
                continue
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", s[i:])
            if m and (i == 0 or not (s[i - 1].isalnum() or s[i - 1] in "_-$.{/")):
                name = m.group(0)
                j = i + len(name)
                if name == "dnl":
                    k = s.find("\n", j)
                    i = len(s) if k < 0 else k + 1
                    continue
                if self.is_macro(name):
                    args = []
                    if j < len(s) and s[j] == "(":
                        args, j = macro_args(s, j)
                    out.append(self.call(name, args))
                    i = j
                    continue
                out.append(name)
                i = j
                continue
            out.append(c)
            i += 1
        return quadrigraphs("".join(out))

    def is_macro(self, name):
        return name in self.defs or name.startswith(
            ("AT_", "OVS_", "m4_", "CHECK_", "WAIT_", "PARSE_", "_OVS"))

    def call(self, name, args):
        if name in self.defs:
            raw = [dequote(x) for x in args]
            body = re.sub(r"\$([1-9])",
                          lambda m: raw[int(m.group(1)) - 1] if int(m.group(1)) <= len(raw) else "",
                          self.defs[name])
            return self.expand(body)
        a = [self.arg(x) for x in args]
        if name in IGNORED_MACROS:
            return ""
        if name in ("AT_CHECK", "AT_CHECK_UNQUOTED"):
            cmd = a[0] if a else ":"
            out = a[2] if len(a) > 2 else ""
            err = a[3] if len(a) > 3 else ""
            keep = ""
            if out.strip() == "stdout":
                keep += "cp \"$AT_OUT\" stdout; "
            if err.strip() == "stderr":
                keep += "cp \"$AT_ERR\" stderr; "
            return "{ %s\n} >\"$AT_OUT\" 2>\"$AT_ERR\"; %s\n" % (cmd, keep)
        if name == "AT_DATA":
            self.heredoc += 1
            tag = "__AT_DATA_%d__" % self.heredoc
            body = a[1] if len(a) > 1 else ""
            if body and not body.endswith("\n"):
                body += "\n"
            return "cat > %s <<'%s'\n%s%s\n" % (a[0].strip(), tag, body, tag)
        if name == "AT_SKIP_IF":
            return "if %s; then exit 77; fi\n" % a[0]
        if name == "OVS_VSWITCHD_START":
            vsctl = a[0].strip() if a else ""
            return "sweep_start %s\n" % vsctl if vsctl else "sweep_start\n"
        if name in ("OVS_WAIT_UNTIL", "OVS_WAIT_WHILE"):
            cond = "&&" if name == "OVS_WAIT_UNTIL" else "||"
            return ("for _w in $(seq 30); do { %s\n} >/dev/null 2>&1 %s break; sleep 0.1; done\n"
                    % (a[0], cond))
        self.unknown.append(name)
        return "sweep_unknown %s\n" % name


PRELUDE = r"""
set +e
SWEEP_LOG=$SWEEP_DIR/log
AT_OUT=$SWEEP_DIR/at.out
AT_ERR=$SWEEP_DIR/at.err
export OVS_RUNDIR=$SWEEP_OVS OVS_LOGDIR=$SWEEP_OVS OVS_DBDIR=$SWEEP_OVS OVS_SYSCONFDIR=$SWEEP_OVS
sweep_b64() { base64 -w0; echo; }
sweep_note() { printf '%s\n' "$*" >>"$SWEEP_LOG"; }
sweep_unknown() { sweep_note "unknown-macro $1"; }
ovs-vsctl() {
    touch "$SWEEP_DIR/ports-changed"
    { echo "@vsctl"; printf '%s\0' "$@" | sweep_b64; } >>"$SWEEP_LOG"
    command ovs-vsctl "$@"
}
sweep_start() {
    [ $# -gt 0 ] && ovs-vsctl -- "$@" >/dev/null
    sweep_note started
}
add_of_ports() {
    local pcap= br
    [ "$1" = --pcap ] && { pcap=1; shift; }
    br=$1; shift
    local args=() n
    for n in "$@"; do args+=(-- add-port "$br" "p$n" -- set interface "p$n" type=dummy "ofport_request=$n"); done
    ovs-vsctl "${args[@]}"
}
add_of_br() {
    local n=$1; shift
    ovs-vsctl -- add-br "br$n" -- set bridge "br$n" datapath-type=dummy fail-mode=secure \
        "other-config:datapath-id=fedcba987654321$n" "other-config:hwaddr=aa:55:aa:55:00:0$n" \
        'protocols=[OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15]' -- "$@"
}
ovs-ofctl() {
    local rc a files=() stdin=
    for a in "$@"; do
        if [ "$a" = - ]; then stdin=$(mktemp -p "$SWEEP_DIR"); cat >"$stdin"; files+=("-" "$stdin");
        elif [ -f "$a" ]; then files+=("$a" "$a"); fi
    done
    if [ -n "$stdin" ]; then command ovs-ofctl "$@" <"$stdin"; else command ovs-ofctl "$@"; fi
    rc=$?
    {
        echo "@ofctl $rc"
        printf '%s\0' "$@" | sweep_b64
        local i
        for ((i = 0; i < ${#files[@]}; i += 2)); do
            printf '%s\0' "${files[i]}" | sweep_b64; sweep_b64 <"${files[i+1]}"
        done
        echo "@end"
    } >>"$SWEEP_LOG"
    return $rc
}
ovs-appctl() {
    local a trace=
    for a in "$@"; do [ "$a" = ofproto/trace ] && trace=1; done
    if [ -z "$trace" ]; then
        case "$*" in
            *netdev-dummy/receive*) sweep_receive "$@" ;;
            *) { echo "@appctl"; printf '%s\0' "$@" | sweep_b64; } >>"$SWEEP_LOG" ;;
        esac
        command ovs-appctl "$@"; return
    fi
    sweep_trace @trace "$@"
}
# A packet sent in: first traced as ofproto/trace would (that changes
# nothing), so the megaflow it is about to get is compared too.
sweep_receive() {
    while [ $# -gt 0 ] && [ "$1" != netdev-dummy/receive ]; do shift; done
    shift
    local port=$1 pkt br ofport n; shift
    # at most 40 a test: bond and flow-limit tests send thousands
    n=$(cat "$SWEEP_DIR/receives" 2>/dev/null || echo 0)
    echo $((n + 1)) >"$SWEEP_DIR/receives"
    [ "$n" -ge 40 ] && { sweep_note packets; return; }
    for pkt in "$@"; do
        case "$pkt" in
            --*) continue ;;
            *\(*) sweep_trace @rtrace ofproto/trace ovs-dummy "$pkt" >/dev/null 2>&1 ;;
            *)
                br=$(command ovs-vsctl port-to-br "$port" 2>/dev/null)
                ofport=$(command ovs-vsctl get interface "$port" ofport 2>/dev/null)
                [ -n "$br" ] && sweep_trace @rtrace ofproto/trace "$br" "in_port=$ofport" "$pkt" >/dev/null 2>&1 ;;
        esac
    done
    sweep_note packets
}
sweep_trace() {
    local kind=$1; shift
    local out=$SWEEP_DIR/trace.out rc
    command ovs-appctl "$@" >"$out" 2>"$SWEEP_DIR/trace.err"; rc=$?
    {
        echo "$kind $rc"
        printf '%s\0' "$@" | sweep_b64
        sweep_b64 <"$out"
        sweep_b64 <"$SWEEP_DIR/trace.err"
        # br0's ports, again only after ovs-vsctl may have changed them
        if [ -e "$SWEEP_DIR/ports-changed" ]; then
            rm -f "$SWEEP_DIR/ports-changed"
            command ovs-vsctl list-ports br0 | sweep_b64
            command ovs-vsctl --bare --columns=name,ofport,type list interface | sweep_b64
        else
            echo same; echo same
        fi
        echo "@end"
    } >>"$SWEEP_LOG"
    cat "$out"; cat "$SWEEP_DIR/trace.err" >&2
    return $rc
}
"""


def record(args):
    tests = []
    for f in args.files.split(","):
        text = subprocess.run(["git", "-C", args.ovs_git, "show", "%s:tests/%s.at" % (args.tag, f)],
                              check=True, capture_output=True, text=True).stdout
        defs = file_macros(text)
        probes = ("ofproto/trace", "netdev-dummy/receive")
        tracing = [n for n, b in defs.items() if any(p in b for p in probes)]
        for i, (name, body) in enumerate(split_tests(text)):
            if not any(p in body for p in probes) and not any(n + "(" in body for n in tracing):
                continue
            if args.match and not re.search(args.match, "%s: %s" % (f, name)):
                continue
            tests.append(("%s-%03d" % (f, i), f, name, body, defs))
    os.makedirs(args.out, exist_ok=True)
    print("recording %d tests" % len(tests), file=sys.stderr)
    for tid, f, name, body, defs in tests:
        tdir = os.path.join(os.path.abspath(args.out), tid)
        shutil.rmtree(tdir, ignore_errors=True)
        os.makedirs(tdir)
        conv = Converter(defs)
        script = PRELUDE + conv.expand(body)
        with open(os.path.join(tdir, "test.sh"), "w") as fh:
            fh.write(script)
        with open(os.path.join(tdir, "meta.json"), "w") as fh:
            json.dump({"id": tid, "file": f, "name": name, "unknown_macros": conv.unknown}, fh)
        ovsdir = tempfile.mkdtemp(prefix="sw", dir="/tmp")
        work = tempfile.mkdtemp(prefix="sww", dir="/tmp")
        try:
            # vswitchd's working directory is the test's (pcap files land there)
            subprocess.run([os.path.join(PEER, "ovs-up.sh"), ovsdir, "0"], check=True,
                           capture_output=True, cwd=work)
            env = dict(os.environ, SWEEP_DIR=tdir, SWEEP_OVS=ovsdir)
            try:
                r = subprocess.run(["bash", os.path.join(tdir, "test.sh")], cwd=work, env=env,
                                   capture_output=True, timeout=args.timeout)
                status = r.returncode
            except subprocess.TimeoutExpired:
                status = "timeout"
        finally:
            subprocess.run([os.path.join(PEER, "ovs-down.sh"), ovsdir], capture_output=True)
            shutil.rmtree(ovsdir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        with open(os.path.join(tdir, "status"), "w") as fh:
            fh.write("%s\n" % status)
        print("%s %s: %s" % (tid, name, status), file=sys.stderr)


# --------------------------------------------------------------------------
# replay


def b64(line):
    return base64.b64decode(line.strip()).decode(errors="replace")


def b64args(line):
    raw = b64(line)
    return raw.split("\0")[:-1] if raw else []


def read_log(path):
    """Events: ('ofctl', rc, args, {file: content}), ('trace', rc, args, out,
    err, br0 ports, interfaces), ('note', text)."""
    events = []
    if not os.path.exists(path):
        return events
    lines = open(path).read().split("\n")
    i = 0
    last_ports = ([], "")
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("@ofctl "):
            rc = int(ln.split()[1])
            args = b64args(lines[i + 1])
            files, j = {}, i + 2
            while lines[j] != "@end":
                files[b64args(lines[j])[0]] = b64(lines[j + 1])
                j += 2
            events.append(("ofctl", rc, args, files))
            i = j + 1
        elif ln.startswith(("@trace ", "@rtrace ")):
            rc = int(ln.split()[1])
            if lines[i + 4] != "same":
                last_ports = (b64(lines[i + 4]).split(), b64(lines[i + 5]))
            ev = ("trace" if ln.startswith("@trace") else "rtrace", rc, b64args(lines[i + 1]),
                  b64(lines[i + 2]), b64(lines[i + 3])) + last_ports
            events.append(ev)
            i += 7
        elif ln in ("@vsctl", "@appctl"):
            events.append((ln[1:], b64args(lines[i + 1])))
            i += 2
        else:
            if ln:
                events.append(("note", ln))
            i += 1
    return events


OFCTL_OPTS_WITH_VALUE = {"-O", "--protocols", "-F", "--flow-format", "-P", "--packet-in-format",
                         "--timeout", "-t"}
READ_ONLY = re.compile(r"^(dump-.*|show|snoop|monitor|probe|ping|benchmark|.*-stats|"
                       r"queue-get-config|get-frags|ofp-parse.*|parse-.*|compose-packet|"
                       r"packet-out|dump-tlv-map|dump-ipfix.*|encode-.*|print-.*)$")


def ofctl_split(args):
    """(command, bridge, rest) of an ovs-ofctl argument list."""
    pos, i = [], 0
    while i < len(args):
        a = args[i]
        if a in OFCTL_OPTS_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-") and a != "-" and not pos:
            i += 1
            continue
        if a.startswith("--") and pos:
            i += 1
            continue
        pos.append(a)
        i += 1
    return (pos[0] if pos else ""), (pos[1] if len(pos) > 1 else ""), pos[2:]


def ofctl_version(args):
    """The OpenFlow versions ovs-ofctl was allowed (-O), or "any" (it then
    negotiates, and OpenFlow 1.0 with Nicira extensions takes what 1.1+
    refuses, e.g. set actions whose prerequisites the match lacks)."""
    for i, a in enumerate(args):
        if a in ("-O", "--protocols") and i + 1 < len(args):
            return args[i + 1]
        for p in ("-O", "--protocols="):
            if a.startswith(p) and len(a) > len(p):
                return a[len(p):]
    return "any"


def replayable(flow):
    """OVS's `Flow:` line as a flow ofproto/trace takes back: what it prints
    but does not parse dropped (`eth`, the packet type; an absent second VLAN
    tag, `vlan_tci1=0x0000`; a zero ND link-layer address of the other ND
    type) or renamed (L4 ports, ICMPv6 type and code). None (and why) for what a trace
    on a fresh bridge cannot reproduce."""
    terms = []
    proto = flow.split(",")[0]
    # it prints L4 ports as tp_src/tp_dst and ICMPv6 as icmp_type/code,
    # but takes those names for TCP and ICMPv4 only
    renames = {"udp": "udp", "udp6": "udp", "sctp": "sctp", "sctp6": "sctp"}
    for t in flow.split(","):
        if t in ("eth", "vlan_tci1=0x0000", "recirc_id=0", "nd_sll=00:00:00:00:00:00",
                 "nd_tll=00:00:00:00:00:00"):
            continue
        if proto in renames and t.startswith(("tp_src=", "tp_dst=")):
            t = renames[proto] + t[2:]
        if proto == "icmp6" and t.startswith(("icmp_type=", "icmp_code=")):
            t = "icmpv6" + t[4:]
        if t.startswith("recirc_id="):
            return None, "a recirculated flow (recirc_id from OVS's own run)"
        if re.match(r"(vlan_tci|dl_vlan|dl_vlan_pcp)\d=", t):
            return None, "a second VLAN tag"
        terms.append(t)
    return ",".join(terms), None


def lines_of(text):
    return [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


class Bridge:
    def __init__(self):
        self.rules, self.setup = [], []
        self.unmodelled = None
        self.learned = False
        # a controller connection (ovs-ofctl monitor) changes what
        # controller actions and table misses translate to
        self.controller = False
        # add-flow(s) that OVS refused: (command, rules, -O)
        self.refused = []

    def vsctl(self, args):
        """Notes configuration a trace with only rules and ports cannot
        reproduce (VLANs, bonds, mirrors, sFlow, fail-mode, ...)."""
        cmds, cur = [], []
        for a in args:
            if a == "--":
                cmds.append(cur)
                cur = []
            elif not (a.startswith("--") and not cur):
                cur.append(a)
        cmds.append(cur)
        for c in cmds:
            if not c or c[0] in ("add-br", "add-port", "del-port", "get", "list", "show",
                                 "list-ports", "find", "wait-until", "br-exists", "port-to-br",
                                 "iface-to-br", "list-br", "comment"):
                continue
            if c[0] == "set" and len(c) > 3 and c[1].lower() in ("interface", "bridge"):
                plain = re.compile(r"(type=dummy|ofport_request=\d+|options:p?stream=.*|"
                                   r"datapath[-_]type=dummy|fail[-_]mode=secure|protocols=.*|"
                                   r"other[-_]config:(datapath-id|hwaddr)=.*)$")
                if all(plain.match(kv) for kv in c[3:]):
                    continue
            self.unmodelled = self.unmodelled or "ovs-vsctl " + " ".join(c)[:60]

    def appctl(self, args):
        """Notes ovs-appctl commands that change what a translation does."""
        changing = re.compile(r"^(fdb/|mdb/|netdev-dummy/set-admin-state|dpif/set-dp-features|"
                              r"bond/|lacp/|stp/|rstp/|ofproto/tnl-push-pop|tnl/|ovs/route/)")
        cmd = next((a for a in args if "/" in a), "")
        if changing.match(cmd):
            self.unmodelled = self.unmodelled or "ovs-appctl " + " ".join(args)[:60]

    def learns(self):
        """Whether packets through these rules change what later ones do."""
        return any(re.search(r"learn\(|normal", r, re.I) for r, _ in self.rules)

    def apply(self, rc, args, files):
        cmd, br, rest = ofctl_split(args)
        if cmd == "monitor":
            self.controller = True
        if not cmd or READ_ONLY.match(cmd):
            return None
        if rc != 0:
            if cmd in ("add-flow", "add-flows") and rest:
                text = rest[0] if cmd == "add-flow" else files.get(rest[0], "")
                self.refused.append((cmd, text, ofctl_version(args)))
            return None
        if br != "br0":
            if not br.startswith("br") and not br.startswith("unix:"):
                return None
            self.unmodelled = self.unmodelled or "%s on %s" % (cmd, br)
            return None

        def content(name):
            return files.get(name, "")

        simple = {"add-flow": "rule", "add-flows": "rules", "add-group": "group",
                  "add-groups": "groups", "add-meter": "meter", "add-meters": "meters",
                  "add-tlv-map": "tlv"}
        if cmd in simple:
            kind = simple[cmd]
            if not rest:
                return None
            version = ofctl_version(args)
            if kind == "rule":
                self.rules.append((rest[0], version))
            elif kind == "rules":
                self.rules += [(r, version) for r in lines_of(content(rest[0]))]
            elif kind == "group":
                self.setup.append("add-group " + rest[0])
            elif kind == "groups":
                self.setup += ["add-group " + g for g in lines_of(content(rest[0]))]
            elif kind == "meter":
                self.setup.append("add-meter " + rest[0])
            elif kind == "meters":
                self.setup += ["add-meter " + m for m in lines_of(content(rest[0]))]
            elif kind == "tlv":
                self.setup.append("add-tlv-map " + rest[0])
            return None
        if cmd == "del-flows" and not rest and "--strict" not in args:
            self.rules = []
            return None
        if cmd == "del-groups" and not rest:
            self.setup = [s for s in self.setup if not s.startswith("add-group ")]
            return None
        if cmd == "del-meters" and not rest:
            self.setup = [s for s in self.setup if not s.startswith("add-meter ")]
            return None
        if cmd == "del-tlv-map" and not rest:
            self.setup = [s for s in self.setup if not s.startswith("add-tlv-map ")]
            return None
        self.unmodelled = self.unmodelled or " ".join([cmd] + rest)[:80]
        return None


TRACE_OPTS_WITH_VALUE = {"--ct-next", "--l7", "--l7-len"}


def trace_parts(args):
    """(options, positional) of an ofproto/trace call."""
    i = args.index("ofproto/trace") + 1
    opts, pos = [], []
    while i < len(args):
        a = args[i]
        if a in TRACE_OPTS_WITH_VALUE:
            opts += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith("-") and not a.startswith("-0"):
            opts.append(a)
        else:
            pos.append(a)
        i += 1
    return opts, pos


def ovs_result(out):
    flow = actions = megaflow = None
    bridge = None
    for ln in out.splitlines():
        if ln.startswith("Flow: ") and flow is None:
            flow = ln[len("Flow: "):]
        elif ln.startswith("Megaflow: "):
            megaflow = ln[len("Megaflow: "):]
        elif ln.startswith("Datapath actions: "):
            actions = ln[len("Datapath actions: "):]
        elif bridge is None:
            m = re.match(r'bridge\("([^"]*)"\)', ln)
            if m:
                bridge = m.group(1)
    return flow, actions, megaflow, bridge


def split_terms(s):
    terms, depth, cur = [], 0, []
    for ch in s.strip():
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        terms.append("".join(cur).strip())
    return set(t for t in terms if t)


def ports_of(br0_ports, interfaces):
    """br0's OpenFlow port numbers, and the types that are not plain ports."""
    table = {}
    rows = [r for r in interfaces.split("\n\n") if r.strip()]
    for r in rows:
        f = r.strip().split("\n")
        if len(f) >= 2:
            table[f[0]] = (f[1], f[2] if len(f) > 2 else "")
    nums, odd = [], []
    for name in br0_ports:
        ofport, kind = table.get(name, ("", ""))
        if ofport.lstrip("-").isdigit() and int(ofport) > 0:
            nums.append(int(ofport))
        if kind not in ("", "dummy", "internal", "system"):
            odd.append(kind)
    return sorted(nums), sorted(set(odd))


def ours(upcalld, work, bridge, ports, opts, flow):
    rules = os.path.join(work, "rules")
    setup = os.path.join(work, "setup")
    with open(rules, "w") as fh:
        fh.write("".join(r + "\n" for r, _ in bridge.rules))
    with open(setup, "w") as fh:
        fh.write("".join(s + "\n" for s in bridge.setup))
    cmd = [upcalld, "trace", "--rules", rules, "--setup", setup]
    if ports:
        cmd += ["--ports", ",".join(str(p) for p in ports)]
    i = 0
    while i < len(opts):
        if opts[i] == "--ct-next":
            cmd += ["--ct-next", opts[i + 1]]
            i += 2
            continue
        i += 1
    cmd.append(flow)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None, None, r.stderr.strip().replace("\n", " ")
    actions = megaflow = None
    for ln in r.stdout.splitlines():
        if ln.startswith("Megaflow: "):
            megaflow = ln[len("Megaflow: "):]
        elif ln.startswith("Datapath actions: "):
            actions = ln[len("Datapath actions: "):]
    return actions, megaflow, None


RECIRC = re.compile(r"(recirc\(|recirc_id=)(0x[0-9a-f]+|\d+)")


def canonical(actions, megaflow):
    """Datapath actions and megaflow with non-zero recirculation ids, which
    depend on what the instance allocated before, renamed in the order they
    first appear (actions first)."""
    names = {}

    def rename(text):
        return RECIRC.sub(lambda m: m.group(1) + "R%d" % names.setdefault(
            int(m.group(2), 0), len(names)) if int(m.group(2), 0) else m.group(0), text or "")
    return rename(actions), rename(megaflow)


def generalize(err):
    """An error message without its line numbers, values and paths, to group by."""
    e = re.sub(r"/\S+", "FILE", err)
    e = re.sub(r":\d+(:\d+)?", "", e)
    e = re.sub(r"\b0x[0-9a-fA-F]+\b|\b\d+\b", "N", e)
    return e[:160]


def compare(args):
    work = tempfile.mkdtemp(prefix="sweep-ours")
    results = []
    tests = sorted(d for d in os.listdir(args.out) if os.path.isdir(os.path.join(args.out, d)))
    for tid in tests:
        tdir = os.path.join(args.out, tid)
        meta = json.load(open(os.path.join(tdir, "meta.json")))
        if args.match and not re.search(args.match, "%s: %s" % (meta["file"], meta["name"])):
            continue
        bridge = Bridge()
        n = 0
        for ev in read_log(os.path.join(tdir, "log")):
            if ev[0] == "note":
                if ev[1] == "packets":
                    bridge.learned = True
                continue
            if ev[0] == "ofctl":
                bridge.apply(ev[1], ev[2], ev[3])
                continue
            if ev[0] == "vsctl":
                bridge.vsctl(ev[1])
                continue
            if ev[0] == "appctl":
                bridge.appctl(ev[1])
                continue
            kind, rc, targs, out, err, br0_ports, interfaces = ev
            n += 1
            row = {"test": tid, "file": meta["file"], "name": meta["name"], "trace": n,
                   "from": "receive" if kind == "rtrace" else "trace",
                   "args": targs[targs.index("ofproto/trace") + 1:]}
            opts, _ = trace_parts(targs)
            flow, oactions, omegaflow, obridge = ovs_result(out)
            ports, odd = ports_of(br0_ports, interfaces)
            if rc != 0 or oactions is None:
                row.update(cls="refused-by-ovs", ovs=(err or out).strip()[:200])
            elif obridge not in (None, "br0"):
                row.update(cls="not-modelled", why="trace on bridge %s" % obridge)
            elif bridge.unmodelled:
                row.update(cls="not-modelled", why=bridge.unmodelled)
            elif odd:
                row.update(cls="not-modelled", why="port types " + ",".join(odd))
            elif bridge.controller and "controller(" in oactions:
                row.update(cls="not-modelled", why="a controller connected (ovs-ofctl monitor)")
            elif bridge.learned and bridge.learns():
                row.update(cls="not-modelled", why="learn/NORMAL after packets or -generate")
            elif replayable(flow)[0] is None:
                row.update(cls="not-modelled", why=replayable(flow)[1])
            else:
                flow = replayable(flow)[0]
                actions, megaflow, e = ours(args.upcalld, work, bridge, ports, opts, flow)
                row.update(flow=flow, ovs_actions=oactions, ovs_megaflow=omegaflow)
                if e is not None:
                    row.update(cls="refused-by-us", ours=e, key=generalize(e))
                    m = re.search(r"/rules:(\d+):", e)
                    if m and int(m.group(1)) <= len(bridge.rules):
                        rule, version = bridge.rules[int(m.group(1)) - 1]
                        row.update(rule=rule, version=version)
                        if version == "any" and "prerequisites not met" in e:
                            row["key"] = "OpenFlow 1.0 only: " + row["key"]
                elif actions is None or canonical(actions, megaflow)[0] != canonical(
                        oactions, omegaflow)[0]:
                    row.update(cls="different", line="actions", ours_actions=actions)
                elif split_terms(canonical(actions, megaflow)[1]) != split_terms(
                        canonical(oactions, omegaflow)[1]):
                    row.update(cls="different", line="megaflow", ours_megaflow=megaflow)
                else:
                    row.update(cls="identical")
            results.append(row)
            if "-generate" in opts:
                bridge.learned = True
        for cmd, text, version in bridge.refused:
            with open(os.path.join(work, "refused"), "w") as fh:
                fh.write(text if cmd == "add-flows" else text + "\n")
            r = subprocess.run([args.upcalld, "trace", "--rules", os.path.join(work, "refused"),
                                "in_port=1"], capture_output=True, text=True, timeout=60)
            results.append({"test": tid, "file": meta["file"], "name": meta["name"],
                            "cls": "ovs-refused-rules", "rules": text[:300], "version": version,
                            "we_refuse": r.returncode != 0,
                            "ours": r.stderr.strip()[:200]})
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(args.out, "results.jsonl"), "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    tally(results, args.show)


ORDER = ["identical", "different", "refused-by-us", "refused-by-ovs", "not-modelled"]


def tally(results, show):
    refused = [r for r in results if r["cls"] == "ovs-refused-rules"]
    results = [r for r in results if r["cls"] != "ovs-refused-rules"]
    per_trace = {c: 0 for c in ORDER}
    for r in results:
        per_trace[r["cls"]] += 1
    per_test = {}
    for r in results:
        per_test.setdefault(r["test"], []).append(r["cls"])
    test_cls = {c: 0 for c in ORDER}
    for t, cs in per_test.items():
        # a test is as good as its worst compared trace
        for c in ["refused-by-us", "different", "identical", "refused-by-ovs", "not-modelled"]:
            if c in cs:
                test_cls[c] += 1
                break
    print("traces: " + ", ".join("%s %d" % (c, per_trace[c]) for c in ORDER))
    print("tests:  " + ", ".join("%s %d" % (c, test_cls[c]) for c in ORDER)
          + " (a test counts as its worst compared trace)")
    accepted = [r for r in refused if not r["we_refuse"]]
    print("add-flow(s) OVS refused: %d, refused by us too: %d, accepted by us: %d"
          % (len(refused), len(refused) - len(accepted), len(accepted)))
    for r in accepted:
        print("  accepted: %s (-O %s): %s" % (r["test"], r["version"],
                                             r["rules"].replace("\n", " | ")[:160]))
    groups = {}
    for r in results:
        if r["cls"] == "refused-by-us":
            groups.setdefault(r["key"], []).append(r)
        elif r["cls"] == "not-modelled":
            groups.setdefault("not modelled: " + r["why"][:60], []).append(r)
        elif r["cls"] == "different":
            groups.setdefault("different " + r["line"] + ": " + r["name"], []).append(r)
    print("\nper class (traces, tests):")
    for k, rs in sorted(groups.items(), key=lambda kv: -len(set(r["test"] for r in kv[1]))):
        print("  %3d %3d  %s" % (len(rs), len(set(r["test"] for r in rs)), k))
    shown = 0
    for r in results:
        if r["cls"] in ("different", "refused-by-us") and shown < show:
            shown += 1
            print("\n%s %s #%d %s" % (r["test"], r["name"], r["trace"], r["cls"]))
            print("  flow %s" % r["flow"])
            print("  ovs  %s | %s" % (r["ovs_actions"][:300], r["ovs_megaflow"]))
            if r["cls"] == "refused-by-us":
                print("  ours %s" % r["ours"])
                if "rule" in r:
                    print("  rule %s (added with -O %s)" % (r["rule"], r["version"]))
            else:
                print("  ours %s | %s" % ((r.get("ours_actions") or r["ovs_actions"])[:300],
                                          r.get("ours_megaflow", r["ovs_megaflow"])))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("ovs_git")
    r.add_argument("out")
    r.add_argument("--tag", default="v3.1.0")
    r.add_argument("--files", default=",".join(FILES))
    r.add_argument("--match")
    r.add_argument("--timeout", type=int, default=120)
    c = sub.add_parser("compare")
    c.add_argument("upcalld")
    c.add_argument("out")
    c.add_argument("--match")
    c.add_argument("--show", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "record":
        record(a)
    else:
        compare(a)


if __name__ == "__main__":
    main()
