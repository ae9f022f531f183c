#!/usr/bin/env bash
# The Steward sweep of issue 13's "done when": every Steward adversary of
# `byzscale sim steward` at f Byzantine servers per site, SEEDS seeds each
# (default 500) on 3 sites of 4 (f = 1), 3 clients of 2 updates with a local
# read after each, symmetric 50 ms at 10 Mbit/s, the paper's CPU costs: zero
# safety violations and zero liveness failures required. Then the run with
# f+1 Byzantine servers in one site (`forge-proposals`, site 0's key in the
# adversary's hands), where the S1 checker must report a violation. Fails
# otherwise; each failing seed comes with the command that replays it.
#
# Measured on the 2-core machine while other builds ran: 100 seeds of all
# ten took 424 s of CPU (15.5 min wall), so about 35 min of CPU for the
# 500-seed default; `docs/STEWARD.md` has the last counts.
#
#   cargo build --release -p byzscale && bench/steward-sweeps.sh [SEEDS] [SEED_START]
source "$(dirname "$0")/lib.sh"
SEEDS=${1:-500}
START=${2:-0}
ADVERSARIES="none withhold-rep withhold-rep-all equivocate-rep garbage-rep bad-shares bad-claims partition-leader cut-site forge-proposals"
COMMON=(--sites 3 --faulty-per-site 1 --clients 3 --read-every 1)
status=0
summary() { # JSON file, name, seconds, whether a violation is wanted
  python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"] if "summary" in r else r
want_violation = sys.argv[4] == "1"
print(f'{sys.argv[2]}: {s["runs"]} seeds, {s["safety_violations"]} safety violations, '
      f'{s["liveness_failures"]} liveness failures, {sys.argv[3]} s')
if not want_violation:
    for f in s.get("failing_seeds", []):
        print(f'  seed {f["seed"]}: {f["reason"][:300]}\n    replay: {f["command"]}')
    sys.exit(1 if s["safety_violations"] + s["liveness_failures"] else 0)
sys.exit(0 if s["safety_violations"] > 0 else 1)
PY
}
for adv in $ADVERSARIES; do
  start=$(date +%s)
  "$BIN" sim steward "${COMMON[@]}" --updates 2 --byzantine "$adv" --seeds "$SEEDS" --seed-start "$START" --json \
    > "$OUT/steward-sweep-$adv.json"
  summary "$OUT/steward-sweep-$adv.json" "$adv" "$(( $(date +%s) - start ))" 0 || status=1
done
# f+1 Byzantine servers in site 0: the checker must report (one seed, one update each)
start=$(date +%s)
"$BIN" sim steward "${COMMON[@]}" --updates 1 --byzantine forge-proposals --byzantine-per-site 2 \
  --seeds 1 --seed-start "$START" --json > "$OUT/steward-sweep-f-plus-one.json" || true
summary "$OUT/steward-sweep-f-plus-one.json" "forge-proposals, f+1 in site 0 (a violation wanted)" \
  "$(( $(date +%s) - start ))" 1 || { echo "  no violation reported"; status=1; }
exit $status
