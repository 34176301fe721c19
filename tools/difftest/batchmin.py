#!/usr/bin/env python3
"""batchmin.py DIFFS.jsonl OUTDIR [PER_SIG] - minimize up to PER_SIG examples of every signature.
Env: UPCALLD (binary, required), OVSDIR (a running ovs-up.sh instance, default /tmp/ovsm)."""
import json, os, subprocess, sys, hashlib, re
diffs, out = sys.argv[1], sys.argv[2]
per = int(sys.argv[3]) if len(sys.argv) > 3 else 1
ovs = os.environ.get('OVSDIR', '/tmp/ovsm')
here = os.path.dirname(os.path.abspath(__file__))
binary = os.environ['UPCALLD']
seen = {}
for l in open(diffs):
    d = json.loads(l)
    if d['sig'].startswith('R:') or d['sig'] == 'missing':
        continue
    seen.setdefault(d['sig'], [])
    if len(seen[d['sig']]) < per and all(x['case'] != d['case'] for x in seen[d['sig']]):
        seen[d['sig']].append(d)
os.makedirs(out, exist_ok=True)
for sig, ds in seen.items():
    for k, d in enumerate(ds):
        name = re.sub(r'[^A-Za-z0-9]+', '_', sig)[:50] + '-%s' % hashlib.md5(sig.encode()).hexdigest()[:6] + '-%d' % k
        od = os.path.join(out, name)
        if os.path.exists(os.path.join(od, 'expected.tsv')):
            continue
        p = subprocess.run(['python3', os.path.join(here, 'minimize.py'), '--ovs', ovs, '--bin', binary,
                            '--rules', os.path.join(d['case'], 'rules.of13'), '--flow', d['flow'], '--out', od],
                           capture_output=True, text=True)
        print('=====', sig, d['case'])
        print(p.stdout[-3000:], p.stderr[-500:], flush=True)
