#!/usr/bin/env bash
# BFT-SMaRt beside byzscale, on the same machine and in the same run (issue 11
# item 4): 4 replicas and one closed-loop client process on loopback, with the
# microbenchmark BFT-SMaRt ships (bftsmart.demo.microbenchmarks.ThroughputLatency
# {Server,Client}), then `byzscale bench` with the same number of closed-loop
# clients and the same request size. Prints both and their ratio, and writes
# bench/results/peers-bftsmart.json.
#
#   bench/peers/bftsmart.sh [CLIENTS] [OPS_PER_CLIENT] [SIZE]
#
# Defaults: 100 clients (threads), 4,000 operations each, 64 B requests.
# BFT-SMaRt's client runs the first half of its operations as JIT warm-up and
# measures the second half; byzscale gets a warm-up of the same length
# (--warmup) before its measured window.
#
# Environment:
#   BFTSMART_REPO  where to clone BFT-SMaRt from (default its GitHub
#                  repository); BFTSMART_COMMIT the commit (default 681cec8c,
#                  "Upgrade benchmarking code", the one measured here)
#   BFTSMART_DIR   an existing checkout to use instead (built in place)
#
# Building: BFT-SMaRt's gradle build downloads gradle and its dependencies from
# Maven Central. This script instead compiles the sources with javac against
# the same libraries from Debian packages (bcprov/bcpkix, commons-codec,
# logback, netty, slf4j; the versions differ slightly from build.gradle's, see
# bench/peers.md), which is all a machine with only the Debian mirror can do.
#
# Fairness notes (bench/peers.md): BFT-SMaRt's default config keeps its log in
# memory (log_to_disk=false) and authenticates with MACs (nosig); byzscale
# fsyncs every vote and every decided slot before it replies. Run it on an
# otherwise idle machine: every process shares the cores.
source "$(dirname "$0")/lib.sh"
CLIENTS=${1:-100}
OPS=${2:-4000}
SIZE=${3:-64}
whole_numbers bench/peers/bftsmart.sh "$CLIENTS" "$OPS" "$SIZE"
REPO=${BFTSMART_REPO:-https://github.com/bft-smart/library}
COMMIT=${BFTSMART_COMMIT:-681cec8c}

command -v javac > /dev/null || { apt-get update -q && apt-get install -y -q default-jdk-headless; }
JARS="bcprov bcpkix commons-codec logback-core logback-classic slf4j-api netty-all"
for j in $JARS; do
  [ -e "/usr/share/java/$j.jar" ] || {
    apt-get update -q
    apt-get install -y -q libbcprov-java libbcpkix-java libcommons-codec-java liblogback-java libnetty-java libslf4j-java
    break
  }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/byzscale-peers-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

SRC=$(checkout "${BFTSMART_DIR:-}" "$REPO" "$COMMIT")
cd "$SRC"
# Debian's netty-all.jar only names the module jars in its manifest: list them
CP=$(ls /usr/share/java/{bcprov,bcpkix,commons-codec,logback-core,logback-classic,slf4j-api}.jar \
  /usr/share/java/netty-*[a-z].jar lib/*.jar | tr '\n' ':')
if [ ! -d build/classes/bftsmart ]; then
  echo "compiling BFT-SMaRt $(git rev-parse --short HEAD 2> /dev/null || echo '?') with javac ..." >&2
  mkdir -p build/classes
  find src/main/java -name '*.java' > "$WORK/sources"
  javac -nowarn -d build/classes -cp "$CP" @"$WORK/sources" 2>&1 | grep -v '^Note:' || true
fi
CP=build/classes:$CP
JAVA=(java -Djava.security.properties=config/java.security -Dlogback.configurationFile=config/logback.xml -cp "$CP")
rm -f config/currentView

# operations per throughput sample printed by replica 0: about 20 samples a run
INTERVAL=$((CLIENTS * OPS / 20))
[ "$INTERVAL" -ge 100 ] || INTERVAL=100
for i in 0 1 2 3; do
  "${JAVA[@]}" bftsmart.demo.microbenchmarks.ThroughputLatencyServer $i $INTERVAL 0 0 false nosig \
    > "$WORK/replica$i.log" 2>&1 &
  PIDS+=($!)
  disown $!
done
for _ in $(seq 120); do
  [ "$(grep -l 'Ready to process operations' "$WORK"/replica*.log 2> /dev/null | wc -l)" = 4 ] && break
  sleep 1
done
[ "$(grep -l 'Ready to process operations' "$WORK"/replica*.log | wc -l)" = 4 ] || {
  echo "BFT-SMaRt replicas did not start; logs in $WORK" >&2
  tail -n 20 "$WORK"/replica*.log >&2
  exit 1
}
echo "BFT-SMaRt: $CLIENTS clients x $OPS operations of $SIZE B (first half warm-up) ..." >&2
"${JAVA[@]}" bftsmart.demo.microbenchmarks.ThroughputLatencyClient 1001 "$CLIENTS" "$OPS" "$SIZE" 0 false false nosig \
  > "$WORK/client.log" 2>&1 &
CLIENT=$!
PIDS+=("$CLIENT")
disown "$CLIENT"
# the client's threads finish but its process does not exit: wait for its line
for _ in $(seq 3600); do
  grep -q 'All clients done' "$WORK/client.log" && break
  kill -0 "$CLIENT" 2> /dev/null || break
  sleep 1
done
grep -q 'All clients done' "$WORK/client.log" || { echo "BFT-SMaRt client did not finish; logs in $WORK" >&2; exit 1; }
for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done
PIDS=()

cd "$ROOT"
cargo build --release -q -p byzscale
# the same closed-loop load: as many clients, the same size, a warm-up as long
# as the measured window
"$BIN" bench --out "$WORK" --name byzscale --clients "$CLIENTS" --payload "$SIZE" \
  --duration 10 --warmup 10 >&2

python3 - "$WORK/replica0.log" "$WORK/client.log" "$WORK/byzscale.json" "$CLIENTS" "$OPS" "$SIZE" "$INTERVAL" \
  "$(git -C "$SRC" rev-parse --short HEAD 2> /dev/null || echo unknown)" <<'EOF'
import json, re, statistics, sys, datetime, os
rlog, clog, bjson, clients, ops, size, interval, commit = sys.argv[1:]
clients, ops, size, interval = int(clients), int(ops), int(size), int(interval)
tp = [float(x) for x in re.findall(r"^Throughput = ([0-9.]+) operations/sec", open(rlog).read(), re.M)]
# samples of the warm-up half are dropped: each sample covers INTERVAL operations
warm = (clients * ops // 2) // interval
measured = tp[warm:] or tp
lat = [float(x) for x in re.findall(r"Average time for \d+ executions \(-10%\) = ([0-9.]+) us", open(clog).read())]
b = json.load(open(bjson))
bft = {"throughput_ops_median": round(statistics.median(measured), 1) if measured else None,
       "throughput_ops_max": round(max(measured), 1) if measured else None,
       "samples": len(measured), "mean_latency_ms": round(statistics.mean(lat) / 1000, 2) if lat else None,
       "commit": commit}
ours = {"throughput_ops": b["throughput_ops"], "p50_ms": b["latency_ms"]["p50"],
        "p99_ms": b["latency_ms"]["p99"], "window_s": b.get("window_s"), "committed": b["committed"]}
ratio = (ours["throughput_ops"] / bft["throughput_ops_median"]) if bft["throughput_ops_median"] else None
out = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{os.cpu_count()} cores",
       "load": open("/proc/loadavg").read().split()[:3], "clients": clients, "size": size,
       "ops_per_client": ops, "bftsmart": bft, "byzscale": ours,
       "ratio": round(ratio, 2) if ratio else None}
if measured:
    json.dump(out, open("bench/results/peers-bftsmart.json", "w"), indent=1)
print(f"| system | clients | size | throughput | latency |")
print(f"|---|---:|---:|---:|---|")
if not measured:
    sys.exit("no throughput sample from BFT-SMaRt's replica 0: raise OPS_PER_CLIENT")
print(f"| BFT-SMaRt {commit} | {clients} | {size} B | {bft['throughput_ops_median']:,} ops/s (median of {len(measured)} samples, max {bft['throughput_ops_max']:,}) | mean {bft['mean_latency_ms']} ms |")
print(f"| byzscale | {clients} | {size} B | {ours['throughput_ops']:,.0f} ops/s | p50 {ours['p50_ms']} ms, p99 {ours['p99_ms']} ms |")
print(f"\nbyzscale / BFT-SMaRt: {out['ratio']}x  ({out['date']}, load {' '.join(out['load'])}; bench/results/peers-bftsmart.json)")
EOF
