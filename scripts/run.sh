#!/usr/bin/env bash
# Builds and runs the howl server with working defaults: NVHTTP on 47989/47984, the management
# API on 127.0.0.1:47990, state in ~/.local/state/howl, the built-in "Test Pattern" app.
# Extra arguments go to `howl serve` (try --help).
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"
ensure_apt_packages
ensure_rust
cargo build --release -p howl-server -p howl-worker -p howl-client --locked
exec "$CARGO_TARGET_DIR/release/howl" serve "$@"
