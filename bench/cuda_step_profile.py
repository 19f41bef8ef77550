#!/usr/bin/env python3
"""bench/cuda_step_profile.py: where one decode step's GPU time goes, per kernel, from Nsight Compute.

On the GPU machine (pack from bench/cuda_pack.sh, model from bench/cuda_llama8b.py):
  ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base --log-file step.csv \
      /tmp/cudapack/bin/cuda_batch /tmp/l8b --batch 64 --ctx 256 --steps 2 --modes 1
  python3 bench/cuda_step_profile.py step.csv
Takes the kernels from the last embed_kernel launch (the start of the last forward) to the end, and sums their
durations per (kernel name, grid); with a second argument K, the K-th forward instead (1 = the first: e.g. a prompt
chunk of `cuda_batch --mix`). ncu runs each kernel alone with cold caches, so small kernels read longer than in a
graph replay, where they overlap (programmatic dependent launch) and find their inputs in L2."""
import collections
import csv
import re
import sys


def main(path, k=None):
    hdr, rows = None, []
    for r in csv.reader(open(path)):
        if hdr is None:
            if 'Kernel Name' in r:
                hdr = r
            continue
        if len(r) != len(hdr):
            continue
        d = dict(zip(hdr, r))
        if d.get('Metric Name') == 'gpu__time_duration.sum':
            rows.append(d)
    starts = [i for i, d in enumerate(rows) if 'embed_kernel' in d['Kernel Name'][:40]]
    if not starts:
        sys.exit('no embed_kernel launch in %s' % path)
    if k is not None and not 1 <= k <= len(starts):
        sys.exit('forward %d asked, %d in %s' % (k, len(starts), path))
    step = rows[starts[-1]:] if k is None else rows[starts[k - 1]:(starts[k] if k < len(starts) else len(rows))]
    agg, total = collections.OrderedDict(), 0.0
    for d in step:
        name = re.sub(r'\(.*', '', d['Kernel Name'])[:60]
        us = float(d['Metric Value'].replace(',', '')) / 1000.0
        a = agg.setdefault((name, d.get('Grid Size', '')), [0, 0.0])
        a[0] += 1
        a[1] += us
        total += us
    print('kernels in the %s step: %d, total %.1f us' % ('last' if k is None else 'forward %d' % k, len(step), total))
    for (name, grid), (n, us) in sorted(agg.items(), key=lambda x: -x[1][1]):
        print('%8.1f us  %4d x %7.2f  %-60s %s' % (us, n, us / n, name, grid))


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
