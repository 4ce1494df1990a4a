#!/usr/bin/env bash
# Benchmark (not a test; issue 18 acceptance 6): send-to-presented latency of one headless
# Chromium viewer of a 1280x720 60 fps Test Pattern lobby on loopback (p50/p95), and the
# server's CPU per browser viewer. The method and its limits are in
# scripts/bench_browser_latency.py. Usage:
#   scripts/bench-browser-latency.sh [more scripts/bench_browser_latency.py options]
# Builds a debug howl unless HOWL_BIN is set (a release howl gives the fairer CPU figure).
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
ensure_apt_packages
ensure_venv
ensure_howl_bin debug
exec "$VENV/bin/python" scripts/bench_browser_latency.py "$@"
