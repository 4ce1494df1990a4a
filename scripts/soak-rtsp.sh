#!/usr/bin/env bash
# Soak of the RTSP egress with a flapping source (not run in CI; see docs/rtsp.md):
#   scripts/soak-rtsp.sh [PLAYERS=10] [MINUTES=30] [more scripts/soak_rtsp.py options]
# Builds a release howl (HOWL_BIN=path/to/howl uses that binary instead), then runs
# scripts/soak_rtsp.py: PLAYERS ffmpeg players join and leave every few seconds (one in five
# killed without TEARDOWN) while the source app's upstream goes down for 10 s every 45 s. Prints
# the server's RSS slope (MB/h), fds and threads at start and end, and the players' frame loss.
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
PLAYERS=${1:-10}
MINUTES=${2:-30}
shift $(( $# < 2 ? $# : 2 ))
ensure_apt_packages
ensure_venv
ensure_howl_bin release
exec "$VENV/bin/python" scripts/soak_rtsp.py --players "$PLAYERS" --minutes "$MINUTES" "$@"
