#!/usr/bin/env bash
# The speed of the Redis gateway path (issue 12 item 6), in one run on one
# machine: the same redis-benchmark commands against the gateway of a 4-replica
# BFT cluster (`byzscale cluster --duration 0 --keep`) and against an
# unreplicated redis-server, then the cluster's own peak
# (`byzscale cluster --clients 256`), with the ratios the issue asks for:
#
#   | command                          | target                          |
#   | -t set -c 50                     | gateway >= 0.35 x redis-server  |
#   | -t set -c 50 -P 16               | gateway >= the cluster's peak   |
#   | -t get -c 50 (unordered reads)   | gateway >= 0.5 x redis-server   |
#
#   cargo build --release && bench/redis-gateway.sh [REQUESTS] [PEAK_SECONDS]
#
# Writes bench/results/redis-gateway.{json,svg} and prints a Markdown table.
# Needs redis-server and redis-benchmark (apt: redis-server redis-tools). Run it
# with nothing else busy on the machine.
source "$(dirname "$0")/lib.sh"
N=${1:-50000}
PEAK_S=${2:-10}
[ -x "$BIN" ] || cargo build --release --bin byzscale

RUNS=("set -c 50" "set -c 50 -P 16" "get -c 50")

# rps of one redis-benchmark run: HOST PORT TEST ARGS...
rps() {
    local host=$1 port=$2 test=$3; shift 3
    local n=$N
    [[ " $* " == *" -P "* ]] && n=$((N * 4))
    redis-benchmark -h "$host" -p "$port" -t "$test" "$@" -n "$n" -r 100000 -q |
        tr '\r' '\n' | grep -E '^(SET|GET):.*per second' | tail -1 |
        sed -E 's/^[A-Z]+: ([0-9.]+) requests per second.*/\1/'
}

# against ADDR, every run, as "label=rps" words
measure() {
    local host=${1%:*} port=${1#*:} out=()
    for r in "${RUNS[@]}"; do
        read -r test rest <<<"$r"
        # shellcheck disable=SC2086
        out+=("$r=$(rps "$host" "$port" "$test" $rest)")
    done
    printf '%s\n' "${out[@]}"
}

keep=$("$BIN" cluster --duration 0 --keep --json)
addr=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['redis'])" "$keep")
stop=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['stop'])" "$keep")
dir=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['dir'])" "$keep")
trap '$stop 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "gateway of a 4-replica cluster on $addr"
gw=$(measure "$addr")
$stop; sleep 1; rm -rf "$dir"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --dir "$ROOT/target" >/dev/null
trap 'redis-cli -p '"$port"' shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$port"
rs=$(measure "127.0.0.1:$port")
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true

echo "the cluster's own peak: byzscale cluster --clients 256 --duration $PEAK_S"
peak=$("$BIN" cluster --clients 256 --duration "$PEAK_S" --json)

python3 - "$gw" "$rs" "$peak" "$N" "$OUT" <<'EOF'
import json, sys
gw_text, rs_text, peak_text, n, out = sys.argv[1:]
parse = lambda t: {l.split("=")[0]: float(l.split("=")[1] or 0) for l in t.splitlines() if "=" in l}
gw, rs = parse(gw_text), parse(rs_text)
peak = json.loads(peak_text)["throughput_ops"]
targets = {"set -c 50": ("redis-server", 0.35), "set -c 50 -P 16": ("cluster peak", 1.0),
           "get -c 50": ("redis-server", 0.5)}
rows = []
for k, (against, goal) in targets.items():
    base = peak if against == "cluster peak" else rs[k]
    ratio = gw[k] / base if base else 0.0
    rows.append({"command": f"redis-benchmark -t {k} -r 100000", "gateway_rps": gw[k],
                 "redis_server_rps": rs[k], "against": against, "baseline_rps": base,
                 "ratio": round(ratio, 3), "target": goal, "met": ratio >= goal})
res = {"command": "bench/redis-gateway.sh", "requests": int(n), "cluster_peak_ops": peak,
       "cluster_peak_command": "byzscale cluster --clients 256", "runs": rows}
json.dump(res, open(f"{out}/redis-gateway.json", "w"), indent=1)
print("| redis-benchmark | gateway | redis-server | ratio | target |")
print("|---|---|---|---|---|")
for r in rows:
    base = "" if r["against"] == "redis-server" else f" (cluster peak {peak:,.0f})"
    print(f"| `-t {r['command'].split('-t ')[1].replace(' -r 100000', '')}` | {r['gateway_rps']:,.0f} req/s "
          f"| {r['redis_server_rps']:,.0f} req/s | {r['ratio']:.2f} of {r['against']}{base} "
          f"| {r['target']} {'met' if r['met'] else 'not met'} |")
# bars: gateway and redis-server per command (no plotting library needed)
w, top = 560, max([max(r["gateway_rps"], r["redis_server_rps"]) for r in rows] + [1])
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{60 + 70 * len(rows)}" font-family="sans-serif" font-size="12">',
       '<text x="10" y="18">redis-benchmark req/s: byzscale gateway (green) vs redis-server (grey)</text>']
for i, r in enumerate(rows):
    y = 36 + 70 * i
    svg.append(f'<text x="10" y="{y + 12}">{r["command"].replace("redis-benchmark ", "")}</text>')
    for j, (v, colour) in enumerate(((r["redis_server_rps"], "#888"), (r["gateway_rps"], "#2a6"))):
        length = int((w - 120) * v / top)
        svg.append(f'<rect x="10" y="{y + 18 + 22 * j}" width="{length}" height="18" fill="{colour}"/>')
        svg.append(f'<text x="{15 + length}" y="{y + 32 + 22 * j}">{v:,.0f}</text>')
svg.append("</svg>")
open(f"{out}/redis-gateway.svg", "w").write("\n".join(svg))
EOF
