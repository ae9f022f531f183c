#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of every decoder a peer or a
# client reaches: builds the targets of fuzz/ and runs each in turn, one
# process, one job, for RUNS inputs (default 10,000,000), then prints a
# Markdown table (target, inputs, wall time, execs/s, peak RSS, crashes) and
# writes it as JSON to bench/results/fuzz.json (rows of targets not run this
# time are kept from earlier runs, so targets can be run one at a time).
#
#   bench/fuzz.sh [RUNS] [TARGET...]
#
# Environment:
#   FUZZ_SANITIZER  none (default) or address
#   FUZZ_MALLOC_MB  largest single allocation allowed (default 32: twice the
#                   16 MiB frame limit); a larger one aborts with
#                   "==byzscale-fuzz: one allocation of N bytes exceeds the
#                   bound", which libFuzzer records as a crash with its input
#   FUZZ_RSS_MB     resident memory limit per target (default 2048)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (10)
#   FUZZ_MAX_TIME   stop a target after this many seconds (default 0: no limit)
#
# Why no sanitizer by default: the targets are safe Rust, so what
# AddressSanitizer added was the per-allocation bound (libFuzzer's
# -malloc_limit_mb works only through sanitizer malloc hooks), at 8 to 10
# times the cost per input. The bound is now the targets' own global
# allocator (crates/fuzzing/src/bounded_alloc.rs, feature bounded-alloc of
# the fuzz crate), active with or without a sanitizer; -rss_limit_mb bounds
# the total. FUZZ_SANITIZER=address adds ASan on top (and its own
# -malloc_limit_mb) for unsafe code in dependencies.
#
# The machine has the stable toolchain only: RUSTC_BOOTSTRAP=1 lets it accept
# the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
# Corpora grow in fuzz/corpus/<target> (not checked in), seeded with
# `fuzz-seeds` (crates/fuzzing) and the checked-in fuzz/regressions/<target>;
# a crash leaves its input in fuzz/artifacts/<target>/ and the run goes on
# with the next target.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10000000}
shift || true
SAN=${FUZZ_SANITIZER:-none}
MALLOC_MB=${FUZZ_MALLOC_MB:-32}
RSS_MB=${FUZZ_RSS_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-10}
MAX_TIME=${FUZZ_MAX_TIME:-0}
for v in "$MALLOC_MB" "$RSS_MB" "$TIMEOUT" "$MAX_TIME"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "bench/fuzz.sh: '$v' is not a whole number (FUZZ_* variables)" >&2; exit 2; }
done
case $SAN in none | address) ;; *) echo "bench/fuzz.sh: FUZZ_SANITIZER must be none or address, not '$SAN'" >&2; exit 2 ;; esac
export FUZZ_MALLOC_MB=$MALLOC_MB
SAN_FLAGS=()
[ "$SAN" = address ] && SAN_FLAGS=(-malloc_limit_mb="$MALLOC_MB")
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^byzscale-fuzz$')
fi

command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
cargo run --release -q -p byzscale-fuzzing --bin fuzz-seeds -- fuzz/corpus
# only for the fuzz workspace: the flag is part of cargo's fingerprints, and
# setting it for the main workspace would rebuild it
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir . -O --debug-assertions --no-trace-compares --sanitizer "$SAN")
BIN=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release

mkdir -p bench/results
OUT=bench/results/fuzz.json
LOGS=fuzz/logs
mkdir -p "$LOGS"
TMP=$OUT.$$.tmp  # per run: two runs may share the results file
COMMIT=$(git rev-parse --short HEAD 2> /dev/null || echo unknown)
git diff --quiet HEAD 2> /dev/null || COMMIT="$COMMIT+dirty"
: > "$TMP"
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
  echo "fuzzing $t ..." >&2
  start=$(date +%s.%N)
  set +e
  "$BIN/$t" -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout="$TIMEOUT" \
    -rss_limit_mb="$RSS_MB" "${SAN_FLAGS[@]}" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t" "fuzz/regressions/$t" \
    > "$LOGS/$t.log" 2>&1
  rc=$?
  set -e
  end=$(date +%s.%N)
  python3 - "$t" "$rc" "$start" "$end" "$LOGS/$t.log" "fuzz/artifacts/$t" "$RUNS" "$MAX_TIME" "$SAN" "$COMMIT" >> "$TMP" <<'EOF'
import json, os, re, sys
t, rc, start, end, log, art, runs_asked, max_time, san, commit = sys.argv[1:]
text = open(log, errors="replace").read()
def stat(name):
    m = re.findall(r"stat::%s:\s*(\d+)" % name, text)
    return int(m[-1]) if m else None
wall = float(end) - float(start)
runs = stat("number_of_executed_units")
if runs is None:  # stopped by a crash before the final stats: the last status line
    m = re.findall(r"#(\d+)\s", text)
    runs = int(m[-1]) if m else 0
crashes = sorted(f for f in os.listdir(art) if f.split("-")[0] in ("crash", "leak", "oom", "timeout", "slow"))
print(json.dumps({"target": t, "inputs": runs, "inputs_asked": int(runs_asked),
       "max_time_s": int(max_time), "wall_s": round(wall, 1),
       "execs_per_s": stat("average_exec_per_sec") or round(runs / max(wall, 1e-9)),
       "peak_rss_mb": stat("peak_rss_mb"), "exit_code": int(rc), "crashes": len(crashes),
       "artifacts": crashes, "over_alloc_bound": "==byzscale-fuzz: one allocation" in text,
       "sanitizer": san, "commit": commit, "load": open("/proc/loadavg").read().split()[:3]}))
EOF
done
# merge with the rows of earlier runs (one row per target, latest wins), in
# the order of fuzz/Cargo.toml, and print the whole table
python3 - "$OUT" "$TMP" $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^byzscale-fuzz$') <<'EOF'
import json, os, sys
out, new, order = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = {}
if os.path.exists(out):
    rows = {r["target"]: r for r in json.load(open(out))}
for line in open(new):
    r = json.loads(line)
    rows[r["target"]] = r
ordered = [rows[t] for t in order if t in rows]
json.dump(ordered, open(out, "w"), indent=1)
os.remove(new)
print("| target | inputs | wall time | execs/s | peak RSS | sanitizer | crashes |")
print("|---|---:|---:|---:|---:|---|---:|")
for r in ordered:
    rss = r["peak_rss_mb"]
    print(f"| {r['target']} | {r['inputs']:,} | {r['wall_s']:.0f} s | {r['execs_per_s']:,} | "
          f"{rss if rss is not None else '?'} MB | {r.get('sanitizer', '?')} | {r['crashes']} |")
EOF
echo
echo "($RUNS runs per target asked, max $MAX_TIME s each (0: none), sanitizer $SAN, malloc limit $MALLOC_MB MB, rss limit $RSS_MB MB, timeout $TIMEOUT s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); JSON: $OUT; logs: $LOGS/)"
