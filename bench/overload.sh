#!/usr/bin/env bash
# Issue 11: the curve of achieved against offered rate on one local cluster
# (4 replicas on loopback), 64 B and 512 B values, open loop from a quarter of
# the closed-loop peak to three times it; prints the table and the verdicts
# (achieved at 3x the peak >= 90% of it: no collapse; open-loop peak >= the
# closed-loop peak) and writes bench/results/overload.json and .svg.
#
#   bench/overload.sh [SECONDS_PER_POINT] [CLIENTS]
#
# Run it on an otherwise idle machine: the load generator shares the cores.
source "$(dirname "$0")/lib.sh"
cargo build --release -q -p byzscale
exec "$BIN" bench-overload --duration "${1:-5}" --clients "${2:-256}"
