#!/usr/bin/env bash
# Runs COMMAND while a second howl streams on the same machine, then checks that stream lived
# through it. Shows that the suite's checks are scoped to the howl under test: its leak and
# worker counts, reaping and ports must not see, count or kill another howl's processes.
#
#   scripts/with-second-howl.sh scripts/test.sh        # the whole suite beside a second howl
#   scripts/with-second-howl.sh pytest-args...         # anything else
#
# The second howl has its own state directory (a temporary one) and the default ports
# (NVHTTP 47989/47984, API 127.0.0.1:47990, RTSP egress 127.0.0.1:8554), which the suite never
# uses (its servers take free ports). A real Moonlight client (moonlight-python, through
# tests/interop/stream_client.py) streams the Test Pattern from it at 640x360 30 fps for the
# whole run. Exit status: COMMAND's, or 3 if COMMAND passed but the second stream did not last.
# Needs the build and the venv that scripts/test.sh makes (HOWL_BIN defaults to that build).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
set +e
cd "$HOWL_ROOT"
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
bin="${HOWL_BIN:-$CARGO_TARGET_DIR/debug/howl}"
py="$VENV/bin/python"
[ -x "$bin" ] || { echo "no howl at $bin: build it first (scripts/test.sh builds it)" >&2; exit 2; }
[ -x "$py" ] || { echo "no venv python at $py: scripts/test.sh makes it" >&2; exit 2; }

work=$(mktemp -d /tmp/howl-second.XXXXXX)
api=47990
HOWL_LOG=info "$bin" serve --no-mdns --bind 127.0.0.1 --state-dir "$work/state" \
  >"$work/howl.log" 2>&1 &
howl_pid=$!
client_pid=
finish() {
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null && wait "$client_pid" 2>/dev/null
  if kill -0 "$howl_pid" 2>/dev/null; then
    kill -TERM "$howl_pid"
    wait "$howl_pid"
    log "second howl exited with $?"
  fi
}
trap finish EXIT

metric() {  # the sum of one metric's samples on the second howl
  curl -sf -H "Authorization: Bearer $(cat "$work/state/api-token")" \
    "http://127.0.0.1:$api/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'
}

for _ in $(seq 300); do  # readiness has no event to await from a shell: poll /readyz
  curl -sf "http://127.0.0.1:$api/readyz" >/dev/null && break
  kill -0 "$howl_pid" 2>/dev/null || { cat "$work/howl.log"; exit 2; }
  sleep 0.1
done
"$py" tests/interop/stream_client.py --http-port 47989 --api-port "$api" \
  --token "$(cat "$work/state/api-token")" --config-dir "$work/client" \
  --width 640 --height 360 --fps 30 --bitrate 1500 --frames 100000000 \
  >"$work/client.log" 2>&1 &
client_pid=$!
# The client reports only when it ends: the second howl's frame counter says it streams.
for _ in $(seq 600); do
  [ "$(metric howl_frames_sent_total)" -gt 30 ] 2>/dev/null && break
  kill -0 "$client_pid" 2>/dev/null || { cat "$work/client.log"; exit 2; }
  sleep 0.1
done
before=$(metric howl_frames_sent_total)
log "second howl (pid $howl_pid, state $work/state) streams to a real client: $before frames sent"

"$@"
rc=$?

after=$(metric howl_frames_sent_total)
alive=yes
kill -0 "$client_pid" 2>/dev/null || alive=no
log "second howl: $((after - before)) frames sent during the command; its client still streaming: $alive"
if [ "$rc" -eq 0 ] && { [ "$alive" != yes ] || [ "$after" -le "$before" ]; }; then
  tail -20 "$work/client.log" "$work/howl.log"
  rc=3
fi
exit "$rc"
