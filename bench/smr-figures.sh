#!/usr/bin/env bash
# The SMR figures of the README, in one run on one machine:
#   - peak closed-loop throughput and p50/p99 for 0 B, 64 B and 1 KiB values;
#   - batching off (--batch-max 1) at the same load;
#   - open-loop latency at half of the 64 B peak;
#   - the Redis gateway against an unreplicated redis-server
#     (bench/redis-gateway.sh; needs redis-tools and redis-server).
# Writes bench/results/smr-*.json and .svg, bench/results/redis-gateway.json,
# and prints a Markdown table.
#
#   cargo build --release && bench/smr-figures.sh [CLIENTS] [SECONDS]
source "$(dirname "$0")/lib.sh"
C=${1:-256}
D=${2:-10}

bench() { "$BIN" bench --out "$OUT" --json "$@" > /dev/null; }

for p in 0 64 1024; do
  bench --name "smr-p$p" --clients "$C" --payload "$p" --duration "$D"
done
bench --name smr-nobatch --clients "$C" --payload 64 --duration "$D" --batch-max 1
half=$(python3 -c "import json; print(round(json.load(open('$OUT/smr-p64.json'))['throughput_ops']/2))")
bench --name smr-half --rate "$half" --clients "$C" --payload 64 --duration "$D"

# Redis: the gateway against redis-server (its own script and table)
if command -v redis-benchmark > /dev/null && command -v redis-server > /dev/null; then
  bench/redis-gateway.sh > /dev/null
fi

python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
def row(name, label):
    d = json.load(open(os.path.join(out, name + ".json")))
    l = d["latency_ms"]
    return f"| {label} | {d['clients']} | {d['throughput_ops']:,.0f} ops/s | {l['p50']:.1f} ms | {l['p99']:.1f} ms |"
print("| run | clients | throughput | p50 | p99 |")
print("|---|---|---|---|---|")
for name, label in [("smr-p0", "0 B, closed loop"), ("smr-p64", "64 B, closed loop"),
                    ("smr-p1024", "1 KiB, closed loop"), ("smr-nobatch", "64 B, batching off"),
                    ("smr-half", "64 B, open loop at half of peak")]:
    print(row(name, label))
p = os.path.join(out, "redis-gateway.json")
if os.path.exists(p):
    for r in json.load(open(p))["runs"]:
        print(f"| Redis `{r['command']}`: gateway {r['gateway_rps']:,.0f} req/s, "
              f"{r['ratio']:.2f} of {r['against']} | | | | |")
EOF
