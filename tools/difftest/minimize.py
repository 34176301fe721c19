#!/usr/bin/env python3
"""minimize.py - shrink a differing (rules, flow) pair while the difference persists.

    minimize.py --ovs OVSDIR --bin UPCALLD --rules RULES --flow FLOW --out DIR [--keep-sig]

Greedily deletes rules (chunks, then one at a time), then flow fields, then match
terms and actions inside the remaining rules, keeping every step where OVS and upcalld
still differ in the same way (same kind A/M/E and, for megaflow differences, at least
one of the originally differing fields).  Writes DIR/rules.of13, DIR/flows.txt,
DIR/expected.tsv (OVS) and DIR/actual.tsv (upcalld).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import Ovs, classify, run_ours  # noqa: E402


class Checker:
    def __init__(self, ovs, binary, sig0):
        self.ovs, self.bin, self.sig0 = ovs, binary, sig0
        self.tmp = tempfile.mkdtemp(prefix='min-')
        self.calls = 0

    def outputs(self, rules, flow):
        rp = os.path.join(self.tmp, 'rules.of13')
        fp = os.path.join(self.tmp, 'flows.txt')
        with open(rp, 'w') as f:
            f.write('# minimized\n' + ''.join(r + '\n' for r in rules))
        with open(fp, 'w') as f:
            f.write(flow + '\n')
        if self.ovs.load(rp) is not None:
            return None, None
        exp = self.ovs.trace(flow)
        ours, proc = run_ours(self.bin, rp, fp)
        got = ours.get(flow)
        if got is None and proc.returncode != 0:
            got = [flow, 'ERROR', '', proc.stderr.strip()]
        return exp, got

    def same(self, rules, flow):
        self.calls += 1
        exp, got = self.outputs(rules, flow)
        if exp is None:
            return False
        sig = classify(exp, got)
        if sig is None:
            return False
        if sig == self.sig0:
            return True
        if self.strict or sig[0] != self.sig0[0]:
            return False
        if sig[0] == 'M':
            f0 = set(re.split('[|,]', self.sig0[2:])) - {''}
            f1 = set(re.split('[|,]', sig[2:])) - {''}
            return bool(f0 & f1)
        return True


def split_terms(rule):
    """rule -> (match terms, actions string)."""
    m, a = rule.split('actions=', 1)
    return [t for t in m.rstrip(',').split(',') if t], a


def split_actions(a):
    out, depth, cur = [], 0, ''
    for ch in a:
        if ch == ',' and depth == 0:
            out.append(cur)
            cur = ''
            continue
        depth += ch == '('
        depth -= ch == ')'
        cur += ch
    if cur:
        out.append(cur)
    return out


def minimize(chk, rules, flow):
    rules = list(rules)
    # rules: chunks then singles
    n = 2
    while len(rules) > 1:
        changed = False
        size = max(1, len(rules) // n)
        i = 0
        while i < len(rules):
            cand = rules[:i] + rules[i + size:]
            if cand and chk.same(cand, flow):
                rules = cand
                changed = True
            else:
                i += size
        if size == 1 and not changed:
            break
        n = min(len(rules), n * 2) if not changed else n
    # flow fields
    fields = flow.split(',')
    i = 0
    while i < len(fields):
        if fields[i].startswith('in_port='):
            i += 1
            continue
        cand = fields[:i] + fields[i + 1:]
        if cand and chk.same(rules, ','.join(cand)):
            fields = cand
        else:
            i += 1
    flow = ','.join(fields)
    # match terms and actions inside rules
    for ri in range(len(rules)):
        terms, acts = split_terms(rules[ri])
        i = 0
        while i < len(terms):
            if terms[i].startswith(('table=', 'priority=')):
                i += 1
                continue
            cand_terms = terms[:i] + terms[i + 1:]
            cand = rules[:ri] + [','.join(cand_terms) + ',actions=' + acts] + rules[ri + 1:]
            if chk.same(cand, flow):
                terms = cand_terms
                rules = cand
            else:
                i += 1
        al = split_actions(acts)
        i = 0
        while i < len(al):
            cal = al[:i] + al[i + 1:]
            if not cal:
                cal = ['drop']
            cand = rules[:ri] + [','.join(terms) + ',actions=' + ','.join(cal)] + rules[ri + 1:]
            if chk.same(cand, flow):
                al = cal if cal != ['drop'] else []
                rules = cand
                if not al:
                    break
            else:
                i += 1
    return rules, flow


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ovs', required=True)
    ap.add_argument('--bin', required=True)
    ap.add_argument('--rules', required=True)
    ap.add_argument('--flow', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--strict', action='store_true', help='require the exact same signature')
    args = ap.parse_args()
    rules = [ln.strip() for ln in open(args.rules) if ln.strip() and not ln.startswith('#')]
    ovs = Ovs(args.ovs)
    chk = Checker(ovs, args.bin, None)
    chk.strict = args.strict
    exp, got = chk.outputs(rules, args.flow)
    chk.sig0 = classify(exp, got)
    if chk.sig0 is None:
        sys.exit('no difference to minimize')
    print('signature:', chk.sig0)
    rules, flow = minimize(chk, rules, args.flow)
    exp, got = chk.outputs(rules, flow)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'rules.of13'), 'w') as f:
        f.write('# minimized from a generated case (signature %s)\n' % chk.sig0)
        f.write(''.join(r + '\n' for r in rules))
    with open(os.path.join(args.out, 'flows.txt'), 'w') as f:
        f.write(flow + '\n')
    with open(os.path.join(args.out, 'expected.tsv'), 'w') as f:
        f.write('\t'.join(exp) + '\n')
    with open(os.path.join(args.out, 'actual.tsv'), 'w') as f:
        f.write('\t'.join(got) + '\n')
    print('%d checks; final signature %s' % (chk.calls, classify(exp, got)))
    print(''.join(r + '\n' for r in rules) + flow)
    print('OVS :', '\t'.join(exp[1:]))
    print('ours:', '\t'.join(got[1:]))


if __name__ == '__main__':
    main()
