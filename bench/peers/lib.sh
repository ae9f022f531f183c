# Shared by bench/peers/*.sh (sourced first, not run), with bench/lib.sh:
# strict mode, the repository root as the working directory (ROOT), BIN and
# OUT.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# whole_numbers SCRIPT VALUE...: exit with a clear error unless every VALUE is
# a positive whole number
whole_numbers() {
  local script=$1
  shift
  for v in "$@"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "$script: '$v' is not a positive whole number" >&2; exit 2; }
  done
}

# checkout DIR REPO COMMIT: print the peer's source folder: DIR if set (an
# existing checkout, used in place), else a fresh clone of REPO at COMMIT
# under $WORK
checkout() {
  local dir=$1 repo=$2 commit=$3
  if [ -n "$dir" ]; then
    echo "$dir"
  else
    git clone -q "$repo" "$WORK/peer" >&2
    git -C "$WORK/peer" checkout -q "$commit" >&2
    echo "$WORK/peer"
  fi
}
