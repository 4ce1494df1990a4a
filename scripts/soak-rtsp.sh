#!/usr/bin/env bash
# Soak test of the RTSP egress (not run in CI; see docs/rtsp.md):
#   scripts/soak-rtsp.sh [PLAYERS=20] [MINUTES=60]
# HOWL_BIN=path/to/howl uses that binary instead of building a release one.
# Keeps PLAYERS ffmpeg players on /app/Test Pattern (half TCP, half UDP, each replaced when it
# exits) and prints the server's figures once a minute, then stops howl with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYERS=${1:-20}
MINUTES=${2:-60}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/howl/target}
command -v ffmpeg >/dev/null || { echo "ffmpeg is required (apt-get install ffmpeg)" >&2; exit 1; }
if [ -z "${HOWL_BIN:-}" ]; then
  cargo build --release --bins
  HOWL_BIN=$TARGET/release/howl
fi
STATE=$(mktemp -d)
PORT=${SOAK_RTSP_PORT:-18554}
API=127.0.0.1:${SOAK_API_PORT:-18990}
HOWL_LOG=info HOWL_RTSP_PORT=0 HOWL_VIDEO_PORT=0 HOWL_AUDIO_PORT=0 HOWL_CONTROL_PORT=0 \
  "$HOWL_BIN" serve --no-mdns --bind 127.0.0.1 --state-dir "$STATE" \
  --http-port 0 --https-port 0 --api-bind "$API" --rtsp-egress-bind "127.0.0.1:$PORT" \
  >"$STATE/howl.log" 2>&1 &
HOWL=$!
players=()
cleanup() {
  for p in "${players[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$HOWL" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$STATE/api-token" ] && break; sleep 0.1; done
TOKEN=$(cat "$STATE/api-token")
URL="rtsp://soak:$TOKEN@127.0.0.1:$PORT/app/Test%20Pattern"
start_player() {
  local transport=$1
  ffmpeg -hide_banner -nostdin -loglevel error -rtsp_transport "$transport" -i "$URL" \
    -f null - >/dev/null 2>&1 &
  echo $!
}
for i in $(seq "$PLAYERS"); do
  players[i]=$(start_player "$([ $((i % 2)) = 0 ] && echo tcp || echo udp)")
done
end=$(( $(date +%s) + MINUTES * 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 60
  for i in $(seq "$PLAYERS"); do
    kill -0 "${players[i]}" 2>/dev/null ||
      players[i]=$(start_player "$([ $((i % 2)) = 0 ] && echo tcp || echo udp)")
  done
  status=$(curl -s -H "Authorization: Bearer $TOKEN" "http://$API/api/v1/status")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$HOWL/status")
  fds=$(ls "/proc/$HOWL/fd" | wc -l)
  threads=$(ls "/proc/$HOWL/task" | wc -l)
  python3 - "$status" "$rss" "$fds" "$threads" <<'PY'
import json, sys, time
e = json.loads(sys.argv[1])["engine"]
r = e["rtsp"]
print(time.strftime("%H:%M:%S"), f"players={r['players']} dropped={r['frames_dropped']}",
      f"sent={r['bytes_sent'] // 1_000_000}MB ended={r['sessions_ended']}",
      f"rss={sys.argv[2]}kB fds={sys.argv[3]} threads={sys.argv[4]}", flush=True)
PY
done
for p in "${players[@]}"; do kill "$p" 2>/dev/null || true; done
kill -TERM "$HOWL"
if wait "$HOWL"; then echo "howl exited 0"; else echo "howl exited $?" >&2; exit 1; fi
