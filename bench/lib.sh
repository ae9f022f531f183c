# Shared by the bench scripts (sourced first, not run, by bench/*.sh and,
# through bench/peers/lib.sh, bench/peers/*.sh): strict mode, the repository
# root as the working directory (ROOT), the release binary (BIN) and the
# results folder (OUT, created if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=target/release/byzscale
OUT=bench/results
mkdir -p "$OUT"
