# howl as a container image: a build stage with Rust, then a Debian 12 slim runtime with only
# what `howl serve` and its media workers load at run time. See docs/install.md.
#
#   docker build -t howl .
#   docker run -d --name howl --network host -v howl-state:/var/lib/howl howl
#
# No `# syntax=` line on purpose: the builder's built-in Dockerfile frontend (BuildKit, Docker
# 20.10 and later) understands the cache mounts below, and a syntax image would have to be
# pulled from a registry. The two base images are build arguments only so a mirror can be
# named; their defaults are the official images.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: a rebuild after a source change
# compiles only the crates that changed (the image's content does not depend on the cache).
RUN --mount=type=cache,id=howl-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=howl-target,target=/src/target \
    cargo build --release --locked -p howl-server -p howl-worker \
 && install -D -m 0755 -t /out target/release/howl target/release/howl-worker

# Just the two binaries: `docker build --target binaries -o DIR .` exports them (the .deb is
# packaged from these, so the package and the image carry the same build).
FROM scratch AS binaries
COPY --from=build /out/ /

FROM ${BASE_IMAGE} AS runtime
# Runtime only: GStreamer with the software encoders (x264 in -ugly, x265 and AV1 in -bad,
# Opus in -base), the source-app demuxers and decoders (-good, -bad, libav), the desktops'
# Xvfb, PulseAudio and its GStreamer source, twm and xterm for the built-in Desktop app,
# tini as PID 1 (reaps orphans, forwards SIGTERM), curl for the health check.
# EXTRA_PACKAGES adds e.g. VA-API drivers for /dev/dri: "mesa-va-drivers intel-media-va-driver".
ARG EXTRA_PACKAGES=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-pulseaudio \
      xvfb pulseaudio twm xterm xfonts-75dpi \
      tini curl ca-certificates ${EXTRA_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so a bind-mounted state directory can be chowned to it (10001:10001).
RUN groupadd --system --gid 10001 howl \
 && useradd --system --uid 10001 --gid howl --home-dir /var/lib/howl --shell /usr/sbin/nologin howl \
 && install -d -o howl -g howl -m 0700 /var/lib/howl \
 && install -d -m 1777 /tmp/.X11-unix
COPY --from=build /out/howl /out/howl-worker /usr/bin/
ENV HOWL_STATE_DIR=/var/lib/howl \
    HOME=/var/lib/howl
USER howl
WORKDIR /var/lib/howl
# The host key, certificate, paired clients and API token: keep this volume across upgrades.
VOLUME ["/var/lib/howl"]
# NVHTTP (47989 http, 47984 https), the management API (loopback by default: set
# HOWL_API_BIND=0.0.0.0:47990 to publish it), the per-launch RTSP range (HOWL_RTSP_PORT and
# HOWL_RTSP_PORT_COUNT), the shared media ports, the players' RTSP egress, and the browsers'
# WebRTC port (loopback by default like the API: HOWL_WEBRTC_BIND=0.0.0.0:8555 with
# HOWL_WEBRTC_CANDIDATE_IP=<the address browsers reach> to publish it).
EXPOSE 47984/tcp 47989/tcp 47990/tcp 48010-48109/tcp 47998/udp 47999/udp 48000/udp 8554/tcp 8555/udp
# Ready when the listeners are up and the engine actor answers within its deadline.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS "http://${HOWL_API_BIND:-127.0.0.1:47990}/readyz" || exit 1
# SIGTERM: howl drains within its 10 s shutdown bound (use `docker stop -t 20`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/bin/howl", "serve"]
