#!/usr/bin/env python3
"""run.py - differential test driver: generated cases, real OVS vs upcalld.

    run.py --ovs OVSDIR --bin UPCALLD --out OUTDIR --styles t1,t2,t3,x --seeds 0-49 [--flows 40]

For every (style, seed): writes OUTDIR/cases/STYLE-SEED/{rules.of13,flows.txt}, loads
the rules into the OVS instance in OVSDIR (dropping rules that ovs-ofctl or the switch
rejects), traces every flow there (expected.tsv) and with UPCALLD (actual.tsv), and
appends one JSON line per differing flow to OUTDIR/diffs.jsonl.  Prints per-style
agreement at the end and writes OUTDIR/summary.json.
"""
import argparse
import json
import os
import re
import subprocess
import time
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.environ.get('OVS_PEER', '/work/shared/tools/ovs-peer'))
import gen  # noqa: E402
from ovs_unixctl import Unixctl, UnixctlError  # noqa: E402
from ovs_trace import parse_trace  # noqa: E402


class Ovs:
    def __init__(self, d):
        self.d = d
        self.mgmt = 'unix:%s/br0.mgmt' % d
        self.c = Unixctl.for_dir(d)

    def load(self, path):
        """Load rules; returns None or the error text."""
        p = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', '--bundle', 'replace-flows', self.mgmt, path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return p.stderr.strip() or 'failed'
        # replaced rules leave the classifier only after an RCU grace period; until then
        # their subtables still add bits to the megaflow, so let the main loop settle
        time.sleep(0.3)
        self.c.call('version', [])
        return None

    def trace(self, flow):
        try:
            text = self.c.call('ofproto/trace', ['br0', flow])
        except UnixctlError as e:
            return [flow, 'ERROR', '', str(e).replace('\n', ' ')]
        a, m, note = parse_trace(text)
        cols = [flow, a if a is not None else '?', m if m is not None else '?']
        if note:
            cols.append(note)
        return cols


def rule_ok(rule):
    p = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', 'parse-flow', rule], capture_output=True, text=True)
    return p.returncode == 0


def write_rules(path, header, lines):
    with open(path, 'w') as f:
        f.write('# %s\n' % header)
        f.write('\n'.join(lines) + '\n')


def load_rules(ovs, path, header, lines):
    """Loads lines, dropping rejected rules; returns the accepted lines."""
    for _ in range(60):
        write_rules(path, header, lines)
        err = ovs.load(path)
        if err is None:
            return lines
        mo = re.search(r':(\d+): ', err)
        if mo and 2 <= int(mo.group(1)) <= len(lines) + 1:
            del lines[int(mo.group(1)) - 2]
            continue
        # switch-side rejection or no line number: check each rule offline, then bisect
        bad = [ln for ln in lines if not rule_ok(ln)]
        if bad:
            lines = [ln for ln in lines if ln not in bad]
            continue
        for i in range(len(lines)):
            write_rules(path, header, lines[:i + 1])
            if ovs.load(path) is not None:
                del lines[i]
                break
        else:
            break
    write_rules(path, header, lines)
    if ovs.load(path) is not None:
        raise RuntimeError('cannot load %s' % path)
    return lines


def run_ours(binary, rules, flows):
    p = subprocess.run([binary, 'trace', '--rules', rules, '--flows', flows], capture_output=True, text=True,
                       timeout=60)
    out = {}
    for ln in p.stdout.splitlines():
        if not ln.strip() or ln.startswith('#'):
            continue
        cols = ln.split('\t')
        out.setdefault(cols[0], cols)
    return out, p


def norm_actions(a):
    return re.sub(r'\s+', '', a)


def terms(m):
    return set(t for t in m.split(',') if t)


def field_of(term):
    return re.split(r'[=(]', term, 1)[0]


def classify(exp, got):
    """Returns None if identical, else a signature string."""
    if got is None:
        return 'missing'
    ea, ga = exp[1], got[1] if len(got) > 1 else ''
    if ea == 'ERROR' or ga == 'ERROR':
        if ea == ga:
            return None
        return 'E:%s' % ('ovs-rejects' if ea == 'ERROR' else 'ours-rejects')
    if norm_actions(ea) != norm_actions(ga):
        ek = sorted(set(re.findall(r'[a-z_]+(?=\()|(?<![\w(=])\d+(?=,|$)|drop', ea)))
        gk = sorted(set(re.findall(r'[a-z_]+(?=\()|(?<![\w(=])\d+(?=,|$)|drop', ga)))
        ek = ['out' if k.isdigit() else k for k in ek]
        gk = ['out' if k.isdigit() else k for k in gk]
        return 'A:%s|%s' % (','.join(sorted(set(ek))), ','.join(sorted(set(gk))))
    et, gt = terms(exp[2]), terms(got[2] if len(got) > 2 else '')
    if et != gt:
        only_e = sorted(set(field_of(t) for t in et - gt))
        only_g = sorted(set(field_of(t) for t in gt - et))
        return 'M:%s|%s' % (','.join(only_e), ','.join(only_g))
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ovs', required=True)
    ap.add_argument('--bin', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--styles', default='t1,t2,t3,x')
    ap.add_argument('--seeds', default='0-19')
    ap.add_argument('--flows', type=int, default=40)
    args = ap.parse_args()
    a, b = (int(x) for x in args.seeds.split('-'))
    ovs = Ovs(args.ovs)
    os.makedirs(os.path.join(args.out, 'cases'), exist_ok=True)
    summ = {}
    dfile = open(os.path.join(args.out, 'diffs.jsonl'), 'a')
    for style in args.styles.split(','):
        st = summ.setdefault(style, {'flows': 0, 'identical': 0, 'rules': 0, 'dropped_rules': 0, 'sigs': {}})
        for seed in range(a, b + 1):
            d = os.path.join(args.out, 'cases', '%s-%d' % (style, seed))
            os.makedirs(d, exist_ok=True)
            lines, flows, _ = gen.gen_case(style, seed, args.flows)
            n0 = len(lines)
            rpath = os.path.join(d, 'rules.of13')
            lines = load_rules(ovs, rpath, '%s case seed %d' % (style, seed), list(lines))
            st['rules'] += len(lines)
            st['dropped_rules'] += n0 - len(lines)
            fpath = os.path.join(d, 'flows.txt')
            with open(fpath, 'w') as f:
                f.write('\n'.join(flows) + '\n')
            exp = [ovs.trace(fl) for fl in flows]
            with open(os.path.join(d, 'expected.tsv'), 'w') as f:
                f.write(''.join('\t'.join(e) + '\n' for e in exp))
            while True:
                ours, proc = run_ours(args.bin, rpath, fpath)
                mo = re.search(r'rules\.of13:(\d+):\d+: (.*)', proc.stderr)
                if ours or not mo or not 2 <= int(mo.group(1)) <= len(lines) + 1:
                    break
                # ours rejects a rule that OVS accepted: record it, drop it on both sides
                bad = lines.pop(int(mo.group(1)) - 2)
                msg = mo.group(2)
                sig = 'R:' + re.sub(r'["(].*', '', msg)[:60].strip()
                st['sigs'][sig] = st['sigs'].get(sig, 0) + 1
                dfile.write(json.dumps({'style': style, 'seed': seed, 'case': d, 'sig': sig, 'rule': bad,
                                        'msg': msg}) + '\n')
                lines = load_rules(ovs, rpath, '%s case seed %d' % (style, seed), lines)
                exp = [ovs.trace(fl) for fl in flows]
                with open(os.path.join(d, 'expected.tsv'), 'w') as f:
                    f.write(''.join('\t'.join(e) + '\n' for e in exp))
            with open(os.path.join(d, 'actual.tsv'), 'w') as f:
                f.write(proc.stdout)
            if proc.returncode != 0 and not ours:
                sys.stderr.write('%s-%d: ours failed: %s\n' % (style, seed, proc.stderr.strip()[:300]))
            for e in exp:
                got = ours.get(e[0])
                sig = classify(e, got)
                st['flows'] += 1
                if sig is None:
                    st['identical'] += 1
                    continue
                st['sigs'][sig] = st['sigs'].get(sig, 0) + 1
                dfile.write(json.dumps({'style': style, 'seed': seed, 'case': d, 'sig': sig, 'flow': e[0],
                                        'ovs': e[1:], 'ours': got[1:] if got else None}) + '\n')
            dfile.flush()
        print('%s: %d/%d identical (%.1f%%), rules %d (+%d dropped)' % (
            style, st['identical'], st['flows'], 100.0 * st['identical'] / max(st['flows'], 1),
            st['rules'], st['dropped_rules']), flush=True)
        for sig, n in sorted(st['sigs'].items(), key=lambda x: -x[1]):
            print('   %5d  %s' % (n, sig))
    with open(os.path.join(args.out, 'summary.json'), 'w') as f:
        json.dump(summ, f, indent=1)


if __name__ == '__main__':
    main()
