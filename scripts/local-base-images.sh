#!/usr/bin/env bash
# Makes the two base images the Dockerfile names, for machines that cannot reach a container
# registry (our CI): `debian:bookworm-slim` built from Debian's own packages with mmdebstrap,
# and `rust:1.95-slim-bookworm` made from it plus this machine's Rust toolchain. Both are
# imported under the official names and tags, so the Dockerfile builds unchanged here and for
# a user who pulls the official images. Images already present are kept.
#
# Usage: scripts/local-base-images.sh            (uses `docker` and $DOCKER_HOST)
# The Debian tarball is cached in $HOWL_IMAGE_CACHE (default ~/.cache/howl/images) for a week.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
RUST_IMAGE="${RUST_IMAGE:-rust:1.95-slim-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org}"
CACHE="${HOWL_IMAGE_CACHE:-$HOME/.cache/howl/images}"
DOCKER="${DOCKER:-docker}"
log() { printf '==> %s\n' "$*" >&2; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

mkdir -p "$CACHE"
if ! have_image "$BASE_IMAGE"; then
  tarball="$CACHE/debian-bookworm-slim.tar"
  if [ -z "$(find "$tarball" -mtime -7 2>/dev/null)" ]; then
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is required (apt-get install mmdebstrap)"; exit 1; }
    # mmdebstrap picks its output format from the file name: keep the .tar suffix.
    partial="$CACHE/partial-debian-bookworm-slim.tar"
    log "building $BASE_IMAGE from Debian packages (mmdebstrap, minbase, docs and locales excluded like the official slim image)"
    # Same sources as the official image: bookworm, its updates and security.
    mmdebstrap --variant=minbase --mode=auto \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      bookworm "$partial" \
      "deb $MIRROR/debian bookworm main" \
      "deb $MIRROR/debian bookworm-updates main" \
      "deb $MIRROR/debian-security bookworm-security main"
    mv "$partial" "$tarball"
  fi
  log "importing $BASE_IMAGE"
  "$DOCKER" import --change 'CMD ["bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
fi

if ! have_image "$RUST_IMAGE"; then
  rustc_bin="$(command -v rustc || echo "$HOME/.cargo/bin/rustc")"
  sysroot="$("$rustc_bin" --print sysroot)"
  want="${RUST_IMAGE#rust:}"; want="${want%%-*}"
  have="$("$rustc_bin" --version | awk '{print $2}')"
  case "$have" in "$want"|"$want".*) ;; *)
    log "this machine's rustc is $have, but $RUST_IMAGE needs $want"; exit 1 ;;
  esac
  log "making $RUST_IMAGE from $BASE_IMAGE and the toolchain in $sysroot"
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  # Only what compiling needs: no docs, no sources, no analysis data.
  mkdir -p "$ctx/rust"
  tar -C "$sysroot" --exclude=share --exclude=lib/rustlib/src --exclude='lib/rustlib/*/analysis' \
    -cf - bin lib libexec | tar -C "$ctx/rust" -xf -
  # This machine's trust store (a superset of Debian's: it may hold a TLS-intercepting
  # proxy's CA that crates.io downloads need here). Only this stand-in build image gets it;
  # the runtime image never does.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt"
  # The same layout and variables as the official image (CARGO_HOME, RUSTUP_HOME, PATH, and
  # gcc with libc6-dev for build scripts and linking).
  cat > "$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=$have
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
EOF
  "$DOCKER" build --network host -q -t "$RUST_IMAGE" "$ctx" >/dev/null
fi
log "base images ready: $BASE_IMAGE, $RUST_IMAGE"
