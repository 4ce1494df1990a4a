#!/usr/bin/env bash
# Runs every check and test of howl: formatting, clippy, Rust unit/property/integration tests,
# and the interop suite against the real Moonlight client library. Installs what it needs.
source "$(dirname "$0")/common.sh"
cd "$HOWL_ROOT"

ensure_apt_packages
ensure_kubectl
ensure_rust
ensure_cargo_deb
ensure_venv

# Text-only and fast, so it runs first: no import cycle between a crate's top-level modules,
# no source file over 800 lines outside tests (the allow-lists with reasons are in the script).
log "structure: no module cycles, no oversized files"
python3 scripts/check-structure.py
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "sans-IO rule: howl-proto depends on no runtime, socket or media crate"
if cargo tree -p howl-proto -e normal --locked | grep -E -o '(tokio|gstreamer|glib|axum|hyper|mio) v[0-9.]+' ; then
  log "howl-proto must stay sans-IO"; exit 1
fi
# One build of every target (binaries included) with one feature resolution, reused below.
log "cargo build (all targets)"
cargo build --workspace --all-targets --locked
log "cargo test"
cargo test --workspace --locked
export HOWL_BIN="$CARGO_TARGET_DIR/debug/howl"
log "interop tests (real moonlight-common-c client via moonlight-python)"
"$VENV/bin/python" -m pytest -ra -p no:cacheprovider tests/interop "$@"
