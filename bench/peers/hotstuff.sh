#!/usr/bin/env bash
# asonnino/hotstuff beside byzscale, on the same machine and in the same run
# (issue 11 item 4): HotStuff's own local benchmark (4 nodes and 4 open-loop
# clients on loopback, its benchmark/benchmark/local.py driven without fabric),
# then `byzscale bench` open loop at the same rate and transaction size. Prints
# both and their ratio, and writes bench/results/peers-hotstuff.json.
#
#   bench/peers/hotstuff.sh [RATE] [SIZE] [SECONDS]
#
# Defaults: 35,000 tx/s offered, 512 B, 20 s (HotStuff's fabfile default
# duration). byzscale gets a 2 s warm-up before its measured window (HotStuff's
# script waits two consensus timeouts before it measures).
#
# Environment:
#   HOTSTUFF_REPO    where to clone from (default its GitHub repository);
#   HOTSTUFF_COMMIT  the commit (default dc01ac8, the one measured here)
#   HOTSTUFF_DIR     an existing checkout to use instead (built in place)
#
# HotStuff needs clang (rocksdb) and tmux (its script runs every node in a
# tmux session); both come from apt. Its Rust build fetches crates from
# crates.io. The first build compiles rocksdb: about 10 minutes on 2 cores.
# Run it on an otherwise idle machine: every process shares the cores.
source "$(dirname "$0")/lib.sh"
RATE=${1:-35000}
SIZE=${2:-512}
SECS=${3:-20}
whole_numbers bench/peers/hotstuff.sh "$RATE" "$SIZE" "$SECS"
# HotStuff's client writes a sample id into the first 9 bytes of a transaction
[ "$SIZE" -ge 9 ] || { echo "bench/peers/hotstuff.sh: HotStuff transactions are at least 9 bytes" >&2; exit 2; }
REPO=${HOTSTUFF_REPO:-https://github.com/asonnino/hotstuff}
COMMIT=${HOTSTUFF_COMMIT:-dc01ac8}

for tool in clang tmux; do
  command -v $tool > /dev/null || { apt-get update -q && apt-get install -y -q clang libclang-dev tmux; break; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/byzscale-peers-XXXXXX")
trap 'tmux kill-server 2> /dev/null || true; rm -rf "$WORK"' EXIT INT TERM
SRC=$(checkout "${HOTSTUFF_DIR:-}" "$REPO" "$COMMIT")
HS_COMMIT=$(git -C "$SRC" rev-parse --short HEAD 2> /dev/null || echo unknown)

echo "HotStuff $HS_COMMIT: 4 nodes, $RATE tx/s of $SIZE B for $SECS s (builds first) ..." >&2
# the parameters are those of HotStuff's fabfile `local` task, but for rate, size, duration
(cd "$SRC/benchmark" && python3 - "$RATE" "$SIZE" "$SECS" > "$WORK/hotstuff.txt") <<'EOF'
import sys
from benchmark.local import LocalBench
rate, size, secs = map(int, sys.argv[1:])
bench = {"faults": 0, "nodes": 4, "rate": rate, "tx_size": size, "duration": secs}
node = {"consensus": {"timeout_delay": 1_000, "sync_retry_delay": 10_000},
        "mempool": {"gc_depth": 50, "sync_retry_delay": 5_000, "sync_retry_nodes": 3,
                    "batch_size": 15_000, "max_batch_delay": 10}}
print(LocalBench(bench, node).run(debug=False).result())
EOF
cat "$WORK/hotstuff.txt" >&2

cd "$ROOT"
cargo build --release -q -p byzscale
"$BIN" bench --out "$WORK" --name byzscale --rate "$RATE" --payload "$SIZE" \
  --duration "$SECS" --warmup 2 >&2

python3 - "$WORK/hotstuff.txt" "$WORK/byzscale.json" "$RATE" "$SIZE" "$SECS" "$HS_COMMIT" <<'EOF'
import json, re, sys, datetime, os
txt, bjson, rate, size, secs, commit = sys.argv[1:]
text = open(txt).read()
def num(label, unit):
    m = re.search(r"%s: ([0-9,]+) %s" % (re.escape(label), unit), text)
    return int(m.group(1).replace(",", "")) if m else None
hs = {"end_to_end_tps": num("End-to-end TPS", "tx/s"), "end_to_end_latency_ms": num("End-to-end latency", "ms"),
      "consensus_tps": num("Consensus TPS", "tx/s"), "consensus_latency_ms": num("Consensus latency", "ms"),
      "commit": commit}
if hs["end_to_end_tps"] is None:
    sys.exit("no 'End-to-end TPS' line in HotStuff's summary (see above)")
b = json.load(open(bjson))
ours = {"achieved_rate": b.get("achieved_rate"), "throughput_ops": b["throughput_ops"],
        "saturated": b.get("saturated"), "p50_ms": b["latency_ms"]["p50"], "p99_ms": b["latency_ms"]["p99"]}
ratio = ours["throughput_ops"] / hs["end_to_end_tps"]
out = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{os.cpu_count()} cores",
       "load": open("/proc/loadavg").read().split()[:3], "offered_rate": int(rate), "size": int(size),
       "seconds": int(secs), "hotstuff": hs, "byzscale": ours, "ratio": round(ratio, 2)}
json.dump(out, open("bench/results/peers-hotstuff.json", "w"), indent=1)
print("| system | offered | size | achieved | latency |")
print("|---|---:|---:|---:|---|")
print(f"| HotStuff {commit} | {int(rate):,} tx/s | {size} B | {hs['end_to_end_tps']:,} tx/s | end-to-end mean {hs['end_to_end_latency_ms']} ms |")
print(f"| byzscale | {int(rate):,} ops/s | {size} B | {ours['throughput_ops']:,.0f} ops/s{' (saturated)' if ours['saturated'] else ''} | p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms |")
print(f"\nbyzscale / HotStuff: {out['ratio']}x  ({out['date']}, load {' '.join(out['load'])}; bench/results/peers-hotstuff.json)")
EOF
