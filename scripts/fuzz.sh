#!/usr/bin/env bash
# Fuzzes every network parser with generated inputs (not part of CI: a million inputs per
# parser take minutes). Usage: scripts/fuzz.sh [COUNT] [--only PARSER] [--seed N]
# COUNT defaults to 1,000,000 inputs per parser. Prints inputs, seconds and panics per parser;
# exits non-zero (and leaves fuzz-crash-*.hex files) if any parser panicked.
# See crates/howl-fuzz and docs/ARCHITECTURE.md ("Fuzzing").
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$HOWL_ROOT"
ensure_rust
cargo build --release --locked -q -p howl-fuzz
exec "$CARGO_TARGET_DIR/release/howl-fuzz" "${@:-1000000}"
