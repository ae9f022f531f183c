#!/usr/bin/env bash
# Replica memory under attack (issue 10, "Done when"): a local 4-replica SMR
# group on loopback, replica 3's identity acting as a Byzantine peer and a
# Byzantine client churning ids, honest KV load meanwhile; VmRSS of every
# correct replica each second. Writes bench/results/memory.json and .svg and
# exits non-zero if a correct replica reached the limit.
#
#   cargo build --release && bench/memory.sh [SECONDS] [LIMIT_MIB]
#
# Default 600 s (the figure of the README) and 300 MiB. Run it on a quiet
# machine: the attackers, the replicas and the honest clients share its cores.
source "$(dirname "$0")/lib.sh"
D=${1:-600}
L=${2:-300}
"$BIN" bench-memory --duration "$D" --limit-mib "$L" --out "$OUT" --name memory
