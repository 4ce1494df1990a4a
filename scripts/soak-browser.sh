#!/usr/bin/env bash
# Soak of browser viewers that vanish (issue 18 acceptance 4; not run in CI):
#   scripts/soak-browser.sh [ROUNDS=50] [more scripts/soak_browser.py options]
# Builds a debug howl (HOWL_BIN=path/to/howl uses that binary instead), then runs
# scripts/soak_browser.py: ROUNDS times headless Chromium watches a 640x360 Test Pattern lobby
# and is SIGKILLed; each viewer must end as browser_gone within the silence deadline (3 s
# here). Prints the end latencies, fds/threads/workers and RSS at the baseline and after, and
# exits non-zero on a leak (above the baseline, or RSS more than 5 % up) or a failed round.
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
ROUNDS=${1:-50}
shift $(( $# < 1 ? $# : 1 ))
ensure_apt_packages
ensure_venv
ensure_howl_bin debug
exec "$VENV/bin/python" scripts/soak_browser.py --rounds "$ROUNDS" "$@"
