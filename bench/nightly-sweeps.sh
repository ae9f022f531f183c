#!/usr/bin/env bash
# Nightly-style simulator sweeps (issue 10): 10,000 seeds each of
#   byzscale sim smr     --byzantine mixed --crash-restart
#   byzscale sim byzcast --byzantine mixed --crash-restart
# (every Byzantine strategy mixed in, up to f replicas of a group and whole
# groups crashing and restarting from their modeled disks). Fails if either
# reports a safety violation or a liveness failure; each failing seed comes
# with the command that replays it. Not run in CI (CI runs a few seeds).
# Steward's sweep (every adversary, 500 seeds, and the f+1 run that must
# report a violation) is bench/steward-sweeps.sh.
#
# Measured from 1000-seed runs on the 2-core machine, idle: SMR 15 s wall,
# ByzCast 41 s wall, so about 10 minutes for both at 10,000 seeds (about 30
# minutes while builds run beside it).
#
#   cargo build --release && bench/nightly-sweeps.sh [SEEDS] [SEED_START]
source "$(dirname "$0")/lib.sh"
SEEDS=${1:-10000}
START=${2:-0}
status=0
for p in smr byzcast; do
  start=$(date +%s)
  "$BIN" sim "$p" --byzantine mixed --crash-restart --seeds "$SEEDS" --seed-start "$START" --json \
    > "$OUT/nightly-$p.json"
  secs=$(( $(date +%s) - start ))
  python3 - "$OUT/nightly-$p.json" "$p" "$secs" <<'PY' || status=1
import json, sys
r = json.load(open(sys.argv[1]))
bad = r["safety_violations"] + r["liveness_failures"]
print(f'{sys.argv[2]}: {r["runs"]} seeds, {r["safety_violations"]} safety violations, '
      f'{r["liveness_failures"]} liveness failures, {r.get("restarts", 0)} restarts, {sys.argv[3]} s')
for f in r.get("failing_seeds", []):
    print(f'  seed {f["seed"]}: {f["reason"][:300]}\n    replay: {f["command"]}')
sys.exit(1 if bad else 0)
PY
done
exit $status
