#!/usr/bin/env bash
# The container pass of the test command: the server drivers' suites (Redis single and Cluster,
# PostgreSQL, S3) once more, with every server in a container started by testcontainers, then a
# summary per driver (tests run against containers, containers started, skips and why).
#
# TASKSTORE_TEST_IMAGES (the one switch, see tools/test-services/README.md):
#   local (default)  a private Docker engine of this run (no bridge, loopback only, its own data
#                    and exec roots in a temp folder, DOCKER_HOST at its socket), installed from
#                    apt (docker.io) when missing; images built from the host's Debian packages
#                    by tools/test-services/images/build-images.sh; host networking. The engine is
#                    stopped and its folder removed at the end, also on failure.
#   official         the machine's own engine (DOCKER_HOST or /var/run/docker.sock) and the
#                    official images from Docker Hub (TASKSTORE_REDIS_IMAGE, ..._POSTGRES_IMAGE,
#                    ..._S3_IMAGE to pick versions), with normal port mapping.
# TASKSTORE_CONTAINER_DRIVERS: which drivers (default redis,postgres,s3).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
mode="${TASKSTORE_TEST_IMAGES:-local}"
drivers="${TASKSTORE_CONTAINER_DRIVERS:-redis,postgres,s3}"
say() { echo "container pass: $*"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}
case "$mode" in local | official) ;; *) fail "TASKSTORE_TEST_IMAGES must be local or official, not '$mode'" ;; esac

# TASKSTORE_ENGINE_PARENT: where the engine's folder goes (default $TMPDIR or /tmp). Inside a
# container, point it at a volume: overlay2 cannot stack on the container's own overlay.
work="$(mktemp -d "${TASKSTORE_ENGINE_PARENT:-${TMPDIR:-/tmp}}/taskstore-engine-XXXXXX")"
dockerd_pid=""

# Stops the private engine and removes its folder: on every exit (success, failure, Ctrl-C).
cleanup() {
  local code=$?
  set +e
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    # dockerd stops its containers (shutdown timeout 5 s) and its containerd, then exits.
    kill -TERM "$dockerd_pid"
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid"
  fi
  # Anything else of this engine (containerd, shims) still running: its command line names the folder.
  local pid
  for pid in $(grep -l -s -F "$work" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null
  done
  # Mounts under the folder (container root file systems, netns, shm), deepest first.
  awk -v dir="$work" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r | while read -r mount; do umount -l "$mount"; done
  rm -rf "$work"
  if [ "$mode" = local ]; then
    [ -e "$work" ] && say "could not remove $work" >&2 || say "engine stopped, $work removed"
  fi
  say "took $((SECONDS - started)) s"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "$mode" = local ]; then
  if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
    fail "the local image set runs a private dockerd, which needs root (or sudo). With an engine of your own and Docker Hub: TASKSTORE_TEST_IMAGES=official"
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io from apt"
    # Installing must not start the system's own daemon (the test command runs its own).
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      guard=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
      as_root chmod +x "$guard"
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker.io >/dev/null || {
      [ -n "$guard" ] && as_root rm -f "$guard"
      fail "apt-get install docker.io failed"
    }
    if [ -n "$guard" ]; then as_root rm -f "$guard"; fi
  fi
  # The recipe of SPEC section 7: no bridge, no iptables, so test traffic stays on loopback.
  as_root dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false --ip6tables=false \
    --data-root "$work/data" --exec-root "$work/exec" -p "$work/dockerd.pid" -H "unix://$work/docker.sock" \
    --shutdown-timeout 5 >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker.sock"
  for _ in $(seq 1 150); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { cat "$work/dockerd.log" >&2; fail "dockerd exited"; }
    sleep 0.2
  done
  docker version >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; fail "dockerd did not answer on $DOCKER_HOST within 30 s"; }
  say "private engine $(docker version -f '{{.Server.Version}}') at $DOCKER_HOST ($(docker info -f '{{.Driver}}') storage, data in $work/data) ready after $((SECONDS - started)) s"
  export TASKSTORE_ENGINE_DIR="$work" TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
  images=()
  case ",$drivers," in *,redis,*) images+=(redis) ;; esac
  case ",$drivers," in *,postgres,*) images+=(postgres) ;; esac
  case ",$drivers," in *,s3,*) images+=(radosgw) ;; esac
  build_started=$SECONDS
  while read -r name ref sha how imported; do
    say "image $ref (rootfs sha256:${sha:0:12}, tarball $how, $imported)"
  done < <(bash tools/test-services/images/build-images.sh "${images[@]}")
  say "images ready in $((SECONDS - build_started)) s"
else
  docker version >/dev/null 2>&1 || fail "TASKSTORE_TEST_IMAGES=official needs a running Docker engine (DOCKER_HOST or /var/run/docker.sock)"
  say "engine $(docker version -f '{{.Server.Version}}') at ${DOCKER_HOST:-unix:///var/run/docker.sock}, official images"
  # Pulled once here rather than by each test file at once.
  for image in "${TASKSTORE_REDIS_IMAGE:-redis:7}" "${TASKSTORE_POSTGRES_IMAGE:-postgres:15}" \
    "${TASKSTORE_S3_IMAGE:-$(node -e 'import("./tools/test-services/dist/index.js").then((m) => console.log(m.OFFICIAL_IMAGES.s3))')}"; do
    docker pull -q "$image" >/dev/null && say "pulled $image"
  done
fi

# Servers from the environment would not be containers: this pass never uses them.
unset TASKSTORE_REDIS_URL TASKSTORE_REDIS_CLUSTER_URLS TASKSTORE_POSTGRES_URL TASKSTORE_S3_ENDPOINT
export TASKSTORE_TEST_IMAGES="$mode" TASKSTORE_CONTAINER_DRIVERS="$drivers"
export TASKSTORE_CONTAINER_PASS=1 TASKSTORE_REQUIRE_CONTAINERS=1 TESTCONTAINERS_RYUK_DISABLED=true
export TASKSTORE_CONTAINER_LEDGER="$work/ledger.jsonl" TASKSTORE_CONTAINER_VERDICT="$work/verdict"
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
: >"$TASKSTORE_CONTAINER_LEDGER"

# The tests import the packages' builds: `pnpm test:all` has built them (`pnpm build` before a run of this script alone).
tests_started=$SECONDS
status=0
pnpm exec vitest run --config tools/test-services/vitest.containers.config.ts || status=$?
say "tests took $((SECONDS - tests_started)) s"
[ "$status" = 0 ] || fail "vitest exited with $status"
[ "$(cat "$TASKSTORE_CONTAINER_VERDICT" 2>/dev/null)" = ok ] || fail "the summary's verdict: $(cat "$TASKSTORE_CONTAINER_VERDICT" 2>/dev/null || echo "none written")"
say "ok"
