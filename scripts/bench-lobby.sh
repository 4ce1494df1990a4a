#!/usr/bin/env bash
# Benchmark (not a test): N howl-client viewers of one 1280x720 60 fps lobby, encoded once.
# Prints per-viewer frame loss and the server's CPU per viewer. Usage:
#   scripts/bench-lobby.sh [VIEWERS=100] [SECONDS=15] [BITRATE_KBPS=5000]
# Loopback only; it starts its own howl on free ports with a temporary state directory.
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
VIEWERS="${1:-100}"; SECONDS_RUN="${2:-15}"; BITRATE="${3:-5000}"
# HOWL_BENCH_BIN: a folder with prebuilt howl and howl-worker (scripts/bench-compare.sh);
# HOWL_BENCH_CLIENT: the howl-client to load it with (default: the one beside them). Both are
# unset for the server, which refuses HOWL_* variables it does not know.
if [ -n "${HOWL_BENCH_BIN:-}" ]; then
  BIN="$HOWL_BENCH_BIN"
else
  ensure_apt_packages
  ensure_rust
  cargo build --release -p howl-server -p howl-worker -p howl-client --locked
  BIN="$CARGO_TARGET_DIR/release"
fi
CLIENT="${HOWL_BENCH_CLIENT:-$BIN/howl-client}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); HTTPS=$(port); API=$(port)
HOWL_LOG=warn env -u HOWL_BENCH_BIN -u HOWL_BENCH_CLIENT "$BIN/howl" serve --no-mdns --bind 127.0.0.1 --state-dir "$work/state" \
  --http-port "$HTTP" --https-port "$HTTPS" --api-bind "127.0.0.1:$API" >"$work/howl.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API/readyz" >/dev/null && break; sleep 0.1; done
TOKEN=$(cat "$work/state/api-token")
curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"Bench\",\"app\":\"Test Pattern\",\"width\":1280,\"height\":720,\"fps\":60,\"bitrate_kbps\":$BITRATE}" \
  "http://127.0.0.1:$API/api/v1/lobbies" >/dev/null
client() { "$CLIENT" load --config-dir "$work/clients" --host "127.0.0.1:$HTTP" --app Bench \
  --viewers "$VIEWERS" --bitrate "$BITRATE" "$@"; }
log "pairing $VIEWERS viewers"
client --seconds 1 --api "127.0.0.1:$API" --howl-state-dir "$work/state" >/dev/null
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
worker=$(pgrep -P "$server" howl-worker | head -1)
s0=$(ticks "$server"); w0=$(ticks "$worker"); t0=$(date +%s.%N)
client --seconds "$SECONDS_RUN" >"$work/load.log"
s1=$(ticks "$server"); w1=$(ticks "$worker"); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
python3 - "$work/load.log" "$VIEWERS" "$s0" "$s1" "$w0" "$w1" "$t0" "$t1" "$hz" <<'PY'
import re, sys
log, n, s0, s1, w0, w1, t0, t1, hz = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
text = open(log).read()
got = [int(m) for m in re.findall(r"frames (\d+) \(", text)]
lost = [int(m) for m in re.findall(r"lost (\d+),", text)][:len(got)]
wall = t1 - t0
server_cpu = (s1 - s0) / hz
worker_cpu = (w1 - w0) / hz
total_lost = sum(lost); total = sum(got) + total_lost
print(f"viewers {n}, wall {wall:.1f}s (includes {n} launches)")
print(f"frames received {sum(got)}, lost {total_lost} ({100.0 * total_lost / max(total, 1):.2f} %)")
print(f"server CPU {server_cpu:.2f}s = {100 * server_cpu / wall:.1f} % of one core; "
      f"{1000 * server_cpu / wall / n:.2f} ms/s per viewer")
print(f"worker (one encoder) CPU {worker_cpu:.2f}s = {100 * worker_cpu / wall:.1f} % of one core")
PY
