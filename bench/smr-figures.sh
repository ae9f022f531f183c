#!/usr/bin/env bash
# The SMR figures of the README, in one run on one machine:
#   - peak closed-loop throughput and p50/p99 for 0 B, 64 B and 1 KiB values;
#   - batching off (--batch-max 1) at the same load;
#   - open-loop latency at half of the 64 B peak;
#   - the Redis gateway against an unreplicated redis-server under the same
#     redis-benchmark command (needs redis-tools and redis-server).
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

# Redis: the gateway of a 4-replica cluster, then redis-server, same command
if command -v redis-benchmark > /dev/null && command -v redis-server > /dev/null; then
  RB=(-t set,get -c 50 -n 50000 -r 100000 -q)
  keep=$("$BIN" cluster --duration 0 --keep --json)
  addr=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['redis'])" "$keep")
  stop=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['stop'])" "$keep")
  gw=$(redis-benchmark -h "${addr%:*}" -p "${addr#*:}" "${RB[@]}" | tr '\r' '\n' | grep -E '^(SET|GET):.*per second')
  eval "$stop"
  port=16379
  redis-server --port $port --save "" --appendonly no --daemonize yes > /dev/null
  sleep 0.5
  rs=$(redis-benchmark -p $port "${RB[@]}" | tr '\r' '\n' | grep -E '^(SET|GET):.*per second')
  redis-cli -p $port shutdown nosave > /dev/null 2>&1 || true
  python3 - "$gw" "$rs" "$OUT/redis-gateway.json" "${RB[*]}" <<'EOF'
import json, re, sys
def parse(text):
    r = {}
    for line in text.splitlines():
        m = re.match(r'(SET|GET): ([\d.]+) requests per second, p50=([\d.]+) msec', line.strip())
        if m:
            r[m.group(1)] = {"rps": float(m.group(2)), "p50_ms": float(m.group(3))}
    return r
gw, rs = parse(sys.argv[1]), parse(sys.argv[2])
out = {"command": "redis-benchmark " + sys.argv[4], "byzscale_gateway": gw, "redis_server": rs,
       "ratio": {k: gw[k]["rps"] / rs[k]["rps"] for k in gw if k in rs}}
json.dump(out, open(sys.argv[3], "w"), indent=1)
EOF
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
    r = json.load(open(p))
    for k in ("SET", "GET"):
        if k in r["ratio"]:
            print(f"| Redis {k}: gateway {r['byzscale_gateway'][k]['rps']:,.0f} req/s vs redis-server "
                  f"{r['redis_server'][k]['rps']:,.0f} req/s | | {100*r['ratio'][k]:.0f}% | | |")
EOF
