#!/usr/bin/env bash
# Compatibility, measured (issue 12 item 7): run the command test suite of a
# real Redis client library, redis-py's own `tests/test_commands.py` and
# `tests/test_pipeline.py` (transactions: MULTI/EXEC/WATCH), against
# an unreplicated `redis-server` and against the byzscale Redis gateway
# (`byzscale cluster --duration 0 --keep`: 4 replicas, BFT, one group) in the
# same run, and count what passes on each.
#
#   bench/redis-py-suite.sh            # writes bench/results/redis-py-suite.{json,svg}
#
# Needs: python3 with venv, redis-server (apt: python3-venv redis-server), and
# network access to PyPI the first time (the suite comes from redis-py's source
# distribution, pinned below; it is kept under target/redis-py-suite).
# Builds the release binary if it is missing. Several minutes: tests of
# commands the gateway does not have fail fast, a few wait for their timeout.
source "$(dirname "$0")/lib.sh"

REDIS_PY=${REDIS_PY:-8.2.0}
WORK=$ROOT/target/redis-py-suite
SUITE=$WORK/redis-$REDIS_PY
mkdir -p "$WORK"
[ -x "$BIN" ] || cargo build --release --bin byzscale
if [ ! -d "$SUITE/tests" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" -q download "redis==$REDIS_PY" --no-binary :all: --no-deps -d "$WORK"
    tar -xzf "$WORK/redis-$REDIS_PY.tar.gz" -C "$WORK"
    "$WORK/venv/bin/pip" -q install pytest pytest-timeout "$SUITE"
fi

# run the suite against ADDR (host:port); LABEL names the junit file
suite() {
    local label=$1 addr=$2
    (cd "$SUITE" && "$WORK/venv/bin/python" -m pytest tests/test_commands.py tests/test_pipeline.py \
        --redis-url="redis://$addr" -q -p no:cacheprovider -W ignore --timeout 20 \
        --junitxml="$WORK/$label.xml" >"$WORK/$label.log" 2>&1) || true
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$WORK" \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis-server.log"
trap 'kill $(cat "$WORK/redis.pid" 2>/dev/null) 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "redis-py $REDIS_PY test_commands.py and test_pipeline.py against redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$port"
suite redis-server "127.0.0.1:$port"

CLUSTER=$($BIN cluster --duration 0 --keep --json)
stop=$(echo "$CLUSTER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stop"])')
dir=$(echo "$CLUSTER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["dir"])')
trap 'kill $(cat "$WORK/redis.pid" 2>/dev/null) 2>/dev/null || true; $stop 2>/dev/null || true; rm -rf "$dir"' EXIT
gw=$(echo "$CLUSTER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["redis"])')
echo "... and against the byzscale gateway of a 4-replica cluster on $gw"
suite byzscale "$gw"

python3 - "$WORK" "$REDIS_PY" "$OUT" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
work, version, out = sys.argv[1:]
def counts(label):
    root = ET.parse(f"{work}/{label}.xml").getroot()
    c = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing, passing = [], []
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        name = case.get("name")
        if "skipped" in kinds:
            c["skipped"] += 1
        elif "failure" in kinds:
            c["failed"] += 1; failing.append(name)
        elif "error" in kinds:
            c["errors"] += 1; failing.append(name)
        else:
            c["passed"] += 1; passing.append(name)
    c["total"] = sum(c.values())
    c["failing"] = sorted(set(failing))
    return c, set(passing)
res = {"suite": f"redis-py {version} tests/test_commands.py tests/test_pipeline.py",
       "command": "bench/redis-py-suite.sh",
       "redis_server": None, "byzscale": None}
(a, pa), (b, pb) = counts("redis-server"), counts("byzscale")
res["redis_server"], res["byzscale"] = a, b
# tests that pass on both (a test redis-server fails may pass here by chance)
res["passed_on_both"] = len(pa & pb)
res["ratio_of_server_passes"] = round(len(pa & pb) / len(pa), 3) if pa else None
json.dump(res, open(f"{out}/redis-py-suite.json", "w"), indent=1)
print(f"| | passed | failed | errors | skipped |")
print(f"|---|---|---|---|---|")
for name, c in (("redis-server", a), ("byzscale gateway", b)):
    print(f"| {name} | {c['passed']} | {c['failed']} | {c['errors']} | {c['skipped']} |")
print(f"byzscale passes {len(pa & pb)} of the {len(pa)} tests redis-server passes "
      f"({100 * res['ratio_of_server_passes']:.0f}%)")
# a two-bar SVG of passes (no plotting library needed)
w = 420; bars = [("redis-server", a["passed"]), ("byzscale", b["passed"])]
top = max(v for _, v in bars) or 1
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="180" font-family="sans-serif" font-size="12">',
       f'<text x="10" y="18">redis-py {version} test_commands.py + test_pipeline.py: tests passed</text>']
for i, (name, v) in enumerate(bars):
    y = 40 + i * 60; length = int((w - 160) * v / top)
    svg.append(f'<text x="10" y="{y + 20}">{name}</text>')
    svg.append(f'<rect x="110" y="{y}" width="{length}" height="30" fill="{"#888" if i == 0 else "#2a6"}"/>')
    svg.append(f'<text x="{115 + length}" y="{y + 20}">{v}</text>')
svg.append("</svg>")
open(f"{out}/redis-py-suite.svg", "w").write("\n".join(svg))
EOF
