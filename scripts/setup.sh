#!/usr/bin/env bash
# Sets up a fresh machine (Debian 12, Node >= 20) for taskstore: the system packages the test
# servers need, pnpm 12.4.2, the dependencies, and a build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers for the driver tests (tools/test-services starts them on loopback ports).
apt_packages=()
command -v redis-server >/dev/null 2>&1 || apt_packages+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || apt_packages+=(redis-tools)
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_packages+=(postgresql-15)
# A real S3 for the S3 driver: Ceph's radosgw on a throwaway single-node cluster (about 120 MB).
command -v radosgw >/dev/null 2>&1 || apt_packages+=(radosgw)
command -v ceph-mon >/dev/null 2>&1 || apt_packages+=(ceph-mon)
command -v ceph-osd >/dev/null 2>&1 || apt_packages+=(ceph-osd)
# The JSON driver's fault tests mount a FUSE file system whose folder fsync can be made to fail.
command -v fusermount3 >/dev/null 2>&1 || apt_packages+=(fuse3)
/usr/bin/python3 -c 'import fusepy' >/dev/null 2>&1 || apt_packages+=(python3-fusepy)
# The container pass (scripts/test-containers.sh) runs the server drivers' suites again in
# containers, on a private Docker engine of its own: dockerd, containerd, runc and the CLI.
command -v dockerd >/dev/null 2>&1 || apt_packages+=(docker.io)
# The CLI's completion tests source its scripts in real zsh and fish (bash is always there).
command -v zsh >/dev/null 2>&1 || apt_packages+=(zsh)
command -v fish >/dev/null 2>&1 || apt_packages+=(fish)
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing ${apt_packages[*]} from apt"
  # Installing docker.io must not start the system's own engine: the tests would then take it
  # for theirs (the local-binary pass too). A policy-rc.d that says "no" keeps services down.
  policy_guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_guard" >/dev/null
    $SUDO chmod +x "$policy_guard"
    trap '$SUDO rm -f "$policy_guard"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  if [ -n "$policy_guard" ]; then
    $SUDO rm -f "$policy_guard"
    trap - EXIT
  fi
fi
# The Debian redis-server and postgresql packages may start system services on their default
# ports; tests never use them (each test run starts its own servers on free loopback ports).

if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "12.4.2" ]; then
  echo "setup: installing pnpm 12.4.2"
  npm install --global pnpm@12.4.2 >/dev/null
fi

# better-sqlite3 compiles from source: use the local Node headers instead of downloading them.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

pnpm install --frozen-lockfile
pnpm run build
