#!/usr/bin/env bash
# tools/train_check_determinism.sh: checks that tools/train_default_model.py is deterministic given its seed.
# Trains twice at once (same data, same seed, same settings; any arguments are passed to both runs) into two
# directories, then compares the sha256 of every file the runs wrote and prints IDENTICAL or DIFFERENT with the
# list of files that differ. For a difference it also says where the runs parted (the logs' bit-exact trace lines:
# losses and parameter digests) and, for the weights, which tensors differ and by how much.
#
# Needs the data of `train_default_model.py extract` (.kjv/kjv.tsv) and a python3 with torch, transformers and
# tokenizers; a GPU makes it minutes. Environment:
#   DATA     the extracted text (default .kjv/kjv.tsv)
#   WORK     where the two runs go (default a new directory under /tmp): WORK/a, WORK/b, WORK/a.log, WORK/b.log
#   LIMIT    seconds each run may take before it is stopped (default 470), so that a slow run still leaves logs
#   OUT      if set, a directory that receives the results: run a's weights (model.safetensors), its other files
#            (outputs.tar.xz: models/kjv-llama/ less the weights, tests/fixtures/default_model/expected.json), both
#            logs and report.txt; with DIFFERENT also run b's other files (outputs-b.tar.xz)
#   INSTALL  if 1 and the runs are identical, copies run a's outputs into this checkout (models/kjv-llama/ and
#            tests/fixtures/default_model/expected.json)
# Exit status: 0 identical, 1 different, 2 a run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-.kjv/kjv.tsv}
LIMIT=${LIMIT:-470}
WORK=${WORK:-$(mktemp -d /tmp/kjv-determinism.XXXXXX)}
mkdir -p "$WORK"
REPORT="$WORK/report.txt"
: >"$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }

[ -f "$DATA" ] || { echo "train_check_determinism: no $DATA (run: python3 tools/train_default_model.py extract)" >&2; exit 2; }
say "train_check_determinism: two runs of tools/train_default_model.py train --data $DATA $* at once, in $WORK"
say "host $(hostname), $(nproc) CPUs; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
t0=$(date +%s)
for r in a b; do
  rm -rf "${WORK:?}/$r"
  timeout "$LIMIT" python3 -u tools/train_default_model.py train --data "$DATA" --out "$WORK/$r" "$@" \
    >"$WORK/$r.log" 2>&1 &
  eval "pid_$r=$!"
done
wait "$pid_a"; rc_a=$?
wait "$pid_b"; rc_b=$?
say "run a exited $rc_a, run b exited $rc_b, after $(( $(date +%s) - t0 )) s (limit $LIMIT s each; 124 = stopped by it)"

verdict=DIFFERENT
status=1
if [ "$rc_a" -ne 0 ] || [ "$rc_b" -ne 0 ]; then
  verdict=FAILED
  status=2
  for r in a b; do say "--- last lines of run $r's log:"; tail -n 25 "$WORK/$r.log" | tee -a "$REPORT"; done
else
  (cd "$WORK/a" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$WORK/a.sha256"
  (cd "$WORK/b" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$WORK/b.sha256"
  say "--- sha256 of run a's files:"
  tee -a "$REPORT" <"$WORK/a.sha256"
  # Files present in one run only, and files whose hashes differ.
  diffs=$(join -j 2 -a 1 -a 2 -e MISSING -o 0,1.1,2.1 <(sort -k 2 "$WORK/a.sha256") <(sort -k 2 "$WORK/b.sha256") |
          awk '$2 != $3 { print $1 " (a " substr($2, 1, 16) ", b " substr($3, 1, 16) ")" }')
  if [ -z "$diffs" ] && [ -s "$WORK/a.sha256" ]; then
    verdict=IDENTICAL
    status=0
  else
    say "--- files that differ:"
    say "$diffs"
    # Where the runs parted: the logs' bit-exact lines (trace, step losses in hex, evals with parameter digests),
    # the timings removed.
    for r in a b; do
      grep -E '^(model:|smoke test|trace step|step [0-9]|  eval step|tokenizer:|tokens:|val:|test:|greedy|chat)' \
        "$WORK/$r.log" | sed -E 's/ [0-9.]+ ms\/step [0-9]+ s$//; s/\([0-9.]+ s\)//' >"$WORK/$r.trace"
    done
    say "--- first differing log lines (a, then b):"
    diff "$WORK/a.trace" "$WORK/b.trace" | head -n 12 | tee -a "$REPORT"
    if [ -f "$WORK/a/models/kjv-llama/model.safetensors" ] && [ -f "$WORK/b/models/kjv-llama/model.safetensors" ]; then
      say "--- weights that differ (max |a - b|, elements differing):"
      python3 - "$WORK/a/models/kjv-llama/model.safetensors" "$WORK/b/models/kjv-llama/model.safetensors" \
        2>&1 <<'EOF' | tee -a "$REPORT"
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
n = 0
for k in sorted(set(a) | set(b)):
    if k not in a or k not in b:
        print(f"{k}: in one run only")
    elif not a[k].equal(b[k]):
        d = (a[k].float() - b[k].float()).abs()
        print(f"{k}: max {d.max().item():.3g}, {int((d > 0).sum())} of {d.numel()} elements")
        n += 1
print(f"{n} of {len(a)} tensors differ")
EOF
    fi
  fi
fi
say "$verdict"

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$WORK/a.log" "$OUT/train-a.log" 2>/dev/null
  cp "$WORK/b.log" "$OUT/train-b.log" 2>/dev/null
  if [ -f "$WORK/a/models/kjv-llama/model.safetensors" ]; then
    cp "$WORK/a/models/kjv-llama/model.safetensors" "$OUT/model.safetensors"
  fi
  if [ -d "$WORK/a/models" ]; then
    tar -cJf "$OUT/outputs.tar.xz" -C "$WORK/a" --exclude model.safetensors models tests
  fi
  if [ "$verdict" != IDENTICAL ] && [ -d "$WORK/b/models" ]; then
    tar -cJf "$OUT/outputs-b.tar.xz" -C "$WORK/b" --exclude model.safetensors models tests
  fi
  cp "$REPORT" "$OUT/report.txt"
fi
if [ "$verdict" = IDENTICAL ] && [ "${INSTALL:-0}" = 1 ]; then
  mkdir -p models/kjv-llama tests/fixtures/default_model
  cp "$WORK"/a/models/kjv-llama/* models/kjv-llama/
  cp "$WORK/a/tests/fixtures/default_model/expected.json" tests/fixtures/default_model/
  echo "installed run a's outputs into models/kjv-llama/ and tests/fixtures/default_model/"
fi
exit "$status"
