#!/usr/bin/env bash
# Benchmark (not a test): this tree against an older commit, side by side on this machine, in
# one run (issue 14 acceptance 4: "no regression against the commit before the change").
#   scripts/bench-compare.sh OLD_COMMIT|OLD_CHECKOUT_DIR [VIEWERS=100] [SECONDS=15] [ROUNDS=2]
# Builds both in release (one shared target dir: dependencies build once), then alternates
# old / new / new doing the old build's wire work (fec_small_frames and loopback encryption
# off), ROUNDS times, each one scripts/bench-lobby.sh
# (same howl-client for all: the servers are what is compared), and then the desktop test's
# input-to-picture latency (tests/interop/test_desktop.py, 1024x768) three times per build.
# Run it on a quiet machine: the CPU figures are per viewer and per second of wall time.
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
OLD="${1:?usage: scripts/bench-compare.sh OLD_COMMIT [VIEWERS] [SECONDS] [ROUNDS]}"
VIEWERS="${2:-100}"; SECONDS_RUN="${3:-15}"; ROUNDS="${4:-2}"
ensure_apt_packages
ensure_rust
ensure_venv
work="$(mktemp -d)"
cleanup() { git worktree remove --force "$work/old-tree" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
CRATES=(-p howl-server -p howl-worker -p howl-client -p howl-testapp)
build() { # build TREE OUT: release binaries of TREE copied to OUT (the target dir is shared)
  # Cargo names a workspace crate's artifacts by its path inside the workspace, so the two
  # trees' crates share names in the shared target dir: clean them, keep the dependencies.
  (cd "$1" && cargo metadata --no-deps --format-version 1 \
     | python3 -c 'import json, sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))' \
     | xargs cargo clean --release 2>/dev/null || true)
  (cd "$1" && cargo build --release "${CRATES[@]}" --locked)
  mkdir -p "$2"
  cp "$CARGO_TARGET_DIR"/release/{howl,howl-worker,howl-client,howl-testapp} "$2/"
}
if [ -d "$OLD" ]; then  # a checkout of the old commit already (its build may be warm)
  old_tree="$(cd "$OLD" && pwd)"
else
  old_tree="$work/old-tree"
  git worktree add --detach "$old_tree" "$OLD" >/dev/null
fi
log "building $(git -C "$old_tree" rev-parse --short HEAD) (old) and $(git rev-parse --short HEAD) (new), release"
build "$old_tree" "$work/old"
build "$HOWL_ROOT" "$work/new"
run() { # run LABEL BINDIR [ENV...]
  local label="$1" bin="$2"; shift 2
  log "$label"
  env "$@" HOWL_BENCH_BIN="$bin" HOWL_BENCH_CLIENT="$work/new/howl-client" \
    scripts/bench-lobby.sh "$VIEWERS" "$SECONDS_RUN" | sed "s/^/$label: /" | tee -a "$work/lobby.txt"
}
for r in $(seq "$ROUNDS"); do
  run "old" "$work/old"
  run "new" "$work/new"
  # The same wire work as the old build: no small-frame parity, no video encryption.
  run "new, as old on the wire" "$work/new" HOWL_FEC_SMALL_FRAMES=false HOWL_ENCRYPTION_LOOPBACK=off
done
latency() { # latency LABEL BINDIR: the desktop test's input-to-picture latencies, in ms
  local dump="$work/desktop-$1.json"
  HOWL_BIN="$2/howl" HOWL_DESKTOP_DUMP="$dump" "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/interop/test_desktop.py -k "streams_and_takes_input and 1024x768" >/dev/null || true
  "$VENV/bin/python" - "$dump" "$1" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
r = json.JSONDecoder().raw_decode(text)[0]
lat = {k: (None if v is None else round(1000 * v)) for k, v in r.get("latency", {}).items()}
print(f"{sys.argv[2]}: desktop input-to-picture latency (ms): {lat}")
PY
}
log "desktop input latency"
for r in 1 2 3; do
  latency old "$work/old" | tee -a "$work/latency.txt"
  latency new "$work/new" | tee -a "$work/latency.txt"
done
echo
echo "== summary ($VIEWERS viewers, $SECONDS_RUN s, $ROUNDS rounds; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
grep -E "lost|per viewer" "$work/lobby.txt"
cat "$work/latency.txt"
