# Shared set-up for scripts/run.sh and scripts/test.sh. Sourced, not executed.
# Installs what a fresh Debian 12 machine lacks, and keeps the build cache outside the clone.
set -euo pipefail

HOWL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A warm build is fast only if the target dir survives fresh clones: keep it outside.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/howl/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# System packages the build and the tests need (Debian names).
APT_PACKAGES=(build-essential pkg-config python3 python3-venv python3-pip procps iproute2 curl libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-plugins-good gstreamer1.0-tools gstreamer1.0-x ffmpeg chromium chromium-driver xvfb xclip pulseaudio pulseaudio-utils gstreamer1.0-pulseaudio xterm twm xfonts-75dpi docker.io mmdebstrap systemd dpkg-dev)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

ensure_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# `kubectl kustomize` renders deploy/kubernetes/ in the tests. Any kubectl will do (this
# machine image may carry a newer one than Debian's, and the two packages cannot both be
# installed); without one, Debian's kubernetes-client.
ensure_kubectl() {
  if ! command -v kubectl >/dev/null; then
    log "installing Debian's kubernetes-client (kubectl)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || { log "Rust (cargo) is required: https://rustup.rs"; exit 1; }
}

# cargo-deb packages the .deb that tests/interop/test_packaging.py installs (pinned: its
# metadata keys are read by this version).
CARGO_DEB_VERSION=3.8.0
ensure_cargo_deb() {
  if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    log "installing cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
  fi
}

# The interop venv: the real Moonlight client library (moonlight-python, pinned: the tests use
# a few of its private names) and pytest.
VENV="${HOWL_VENV:-$HOWL_ROOT/.venv}"
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import moonlight_python, pytest, prometheus_client, openapi_spec_validator, selenium, kubernetes_validate' 2>/dev/null; then
    log "creating Python venv for interop tests in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HOWL_ROOT/tests/interop/requirements.txt"
  fi
}

# HOWL_BIN, unless the caller set it: howl and howl-worker built in profile $1 (debug or
# release), for the soak and benchmark scripts.
ensure_howl_bin() {
  [ -n "${HOWL_BIN:-}" ] && return
  ensure_rust
  if [ "$1" = release ]; then
    cargo build --release --locked -p howl-server -p howl-worker
  else
    cargo build --locked -p howl-server -p howl-worker
  fi
  export HOWL_BIN="$CARGO_TARGET_DIR/$1/howl"
}
