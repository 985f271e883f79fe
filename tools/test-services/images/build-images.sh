#!/usr/bin/env bash
# Builds the test servers' container images without a registry: a root file system made of the
# host's installed Debian binaries, their `ldd` libraries and data files, plus a few generated
# files (users, entrypoints), packed as a reproducible tarball (sorted, mtime 0, numeric owners)
# and loaded with `docker import`.
#
#   build-images.sh [redis] [postgres] [radosgw]     (default: all three)
#
# Needs DOCKER_HOST (or the default socket) to reach an engine and the host packages
# (redis-server redis-tools postgresql-15 radosgw ceph-mon ceph-osd). Prints one line per image:
#   <name> taskstore-test/<name>:local <rootfs sha256> <reused|built> <imported|present>
#
# Reuse: the tarball is cached under $TASKSTORE_IMAGE_CACHE (default ~/.cache/taskstore/test-images)
# by a key made of this script, the image's own files and the sha256 of every input file; an
# unchanged key reuses the tarball, and an engine that already holds the image with that key is
# left alone. The same inputs always give the same tarball, so the image's only layer has the
# same digest (`docker image inspect -f '{{.RootFS.Layers}}'`) on every machine with the same
# packages.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "$0")" && pwd)"
cache="${TASKSTORE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskstore/test-images}"
docker_cli="${DOCKER_CLI:-docker}"
mkdir -p "$cache"

log() { echo "build-images: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# --- what goes into each image --------------------------------------------------------------

# Every file lists: "path" (a file, copied with the symlinks leading to it) or "dir:path" (a whole
# folder). ELF files among them get their `ldd` libraries and the dynamic loader added.
redis_inputs() {
  echo /usr/bin/redis-server /usr/bin/redis-check-rdb /usr/bin/redis-cli /usr/bin/dash
}

pg_bin=/usr/lib/postgresql/15/bin
postgres_inputs() {
  echo /usr/bin/dash
  for program in postgres initdb pg_ctl pg_isready psql pg_controldata; do echo "$pg_bin/$program"; done
  # Server modules (encodings, plpgsql, text search dictionaries); not the LLVM JIT (100+ MB, jit=off).
  find /usr/lib/postgresql/15/lib -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sort
  echo dir:/usr/share/postgresql/15/timezonesets dir:/usr/share/postgresql/15/tsearch_data dir:/usr/share/postgresql/15/extension
  find /usr/share/postgresql/15 -maxdepth 1 -type f | sort
  # Debian's PostgreSQL uses the system time zone database.
  echo dir:/usr/share/zoneinfo
}

radosgw_inputs() {
  echo /usr/bin/dash /usr/bin/cat /usr/bin/mkdir /usr/bin/sleep
  echo /usr/bin/radosgw /usr/bin/radosgw-admin /usr/bin/ceph-mon /usr/bin/ceph-osd /usr/bin/monmaptool
  # Plugins the daemons dlopen (erasure code, compression, object classes): not in ldd's list.
  echo dir:/usr/lib/x86_64-linux-gnu/ceph dir:/usr/lib/x86_64-linux-gnu/rados-classes
  find /usr/lib/x86_64-linux-gnu/ceph /usr/lib/x86_64-linux-gnu/rados-classes -name '*.so*' -type f | sort
  # The `ceph` command (Python) for `osd create`, `osd crush add` and `osd stat`: Python 3.11, its
  # standard library and compiled modules, and Ceph's rados binding.
  echo /usr/bin/ceph /usr/bin/python3 dir:/usr/lib/python3.11
  find /usr/lib/python3.11/lib-dynload -name '*.so' | sort
  local dist=/usr/lib/python3/dist-packages
  echo "$dist/ceph_argparse.py" "$dist/ceph_daemon.py" "$dist/rados.cpython-311-x86_64-linux-gnu.so"
  for package in prettytable prettytable-3.6.0.dist-info wcwidth wcwidth-0.2.5.egg-info; do [ -d "$dist/$package" ] && echo "dir:$dist/$package"; done
  return 0
}

# Extra, generated files: written into the staging folder, owners set there.
redis_extra() {
  local stage="$1"
  write_passwd "$stage" "redis:x:999:999:redis:/data:/usr/sbin/nologin" "redis:x:999:"
  mkdir -p "$stage/data" && chown 999:999 "$stage/data"
}

postgres_extra() {
  local stage="$1"
  write_passwd "$stage" "postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/usr/sbin/nologin" "postgres:x:999:"
  install -D -m 0755 "$here/postgres-entrypoint.sh" "$stage/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$stage/var/lib/postgresql/data" "$stage/var/run/postgresql"
  chmod 0700 "$stage/var/lib/postgresql/data"
  chown 999:999 "$stage/var/lib/postgresql" "$stage/var/lib/postgresql/data" "$stage/var/run/postgresql"
}

radosgw_extra() {
  local stage="$1"
  write_passwd "$stage" "ceph:x:999:999:Ceph:/var/lib/ceph:/usr/sbin/nologin" "ceph:x:999:"
  install -D -m 0755 "$here/radosgw-entrypoint.sh" "$stage/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$stage/var/lib/ceph" "$stage/var/run/ceph"
}

# `docker import --change` lines per image.
redis_changes() {
  printf '%s\n' 'WORKDIR /data' 'USER redis' 'ENV PATH=/usr/local/bin:/usr/bin:/bin' 'CMD ["redis-server"]'
}
postgres_changes() {
  printf '%s\n' 'USER postgres' 'WORKDIR /var/lib/postgresql' \
    "ENV PATH=/usr/local/bin:$pg_bin:/usr/bin:/bin" 'ENV PGDATA=/var/lib/postgresql/data' 'ENV TZ=UTC' \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["postgres"]'
}
radosgw_changes() {
  printf '%s\n' 'WORKDIR /var/lib/ceph' 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]'
}

# Files of this folder an image is made from (their content is part of its key).
own_files() {
  case "$1" in
  postgres) echo "$here/postgres-entrypoint.sh" ;;
  radosgw) echo "$here/radosgw-entrypoint.sh" ;;
  esac
}

# --- machinery ------------------------------------------------------------------------------

write_passwd() {
  local stage="$1" user="$2" group="$3"
  mkdir -p "$stage/etc" "$stage/tmp"
  chmod 1777 "$stage/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n%s\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' "$user" >"$stage/etc/passwd"
  printf 'root:x:0:\n%s\nnogroup:x:65534:\n' "$group" >"$stage/etc/group"
  printf 'hosts: files\npasswd: files\ngroup: files\n' >"$stage/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$stage/etc/hosts"
}

# The full list of host paths for an image: the inputs, the libraries of every ELF among them,
# the dynamic loader. Printed sorted and unique ("dir:" entries kept as they are).
resolve_inputs() {
  local name="$1" entry
  local -a files=()
  while read -r entry; do
    [ -n "$entry" ] || continue
    case "$entry" in
    dir:*)
      [ -d "${entry#dir:}" ] || die "$name: folder ${entry#dir:} is missing (install the Debian packages: scripts/setup.sh)"
      echo "$entry"
      ;;
    *)
      [ -e "$entry" ] || die "$name: $entry is missing (install the Debian packages: scripts/setup.sh)"
      echo "$entry"
      files+=("$entry")
      ;;
    esac
  done < <("${name}_inputs" | tr ' ' '\n')
  local file
  for file in "${files[@]}"; do
    if head -c 4 "$file" | grep -q $'^\x7fELF'; then
      ldd "$file" 2>/dev/null | awk '/=> \// {print $3} /^[ \t]*\// {print $1}'
    fi
  done
}

# Copies a host path into the staging folder at the same (canonical-folder) path, keeping a
# symlink as a symlink and adding what it points to.
copy_path() {
  local stage="$1" path="$2" depth="${3:-0}"
  [ "$depth" -lt 16 ] || die "symlink loop at $path"
  local dir base src
  dir="$(realpath -e "$(dirname "$path")")"
  base="$(basename "$path")"
  src="$dir/$base"
  [ -e "$stage$src" ] || [ -L "$stage$src" ] || {
    mkdir -p "$stage$dir"
    cp -a "$src" "$stage$dir/"
  }
  if [ -L "$src" ]; then
    local target
    target="$(readlink "$src")"
    case "$target" in /*) ;; *) target="$dir/$target" ;; esac
    copy_path "$stage" "$target" $((depth + 1))
  fi
}

input_key() {
  local name="$1" list="$2"
  {
    echo "image $name"
    sha256sum "$here/build-images.sh"
    for file in $(own_files "$name"); do sha256sum "$file"; done
    "${name}_changes"
    while read -r entry; do
      case "$entry" in
      dir:*) (cd / && find "${entry#dir:}" \( -type f -o -type l \) -print0 | sort -z | xargs -0 -r sha256sum 2>/dev/null || true) ;;
      *) sha256sum "$(realpath -e "$entry")" && echo "$entry -> $(realpath -e "$entry")" ;;
      esac
    done <"$list"
  } | sha256sum | cut -c1-32
}

build_tarball() {
  local name="$1" list="$2" tarball="$3"
  local stage
  stage="$(mktemp -d "${TMPDIR:-/tmp}/taskstore-image-$name-XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$stage'" RETURN
  mkdir -p "$stage/usr/bin" "$stage/usr/lib" "$stage/usr/lib64" "$stage/usr/sbin"
  ln -s usr/bin "$stage/bin"
  ln -s usr/lib "$stage/lib"
  ln -s usr/lib64 "$stage/lib64"
  ln -s usr/sbin "$stage/sbin"
  local entry
  while read -r entry; do
    case "$entry" in
    dir:*)
      local d
      d="$(realpath -e "${entry#dir:}")"
      mkdir -p "$stage$(dirname "$d")"
      cp -a "$d" "$stage$(dirname "$d")/"
      ;;
    *) copy_path "$stage" "$entry" ;;
    esac
  done <"$list"
  ln -sf dash "$stage/usr/bin/sh"
  "${name}_extra" "$stage"
  # Reproducible: sorted names, one mtime, numeric owners, no atime/ctime in pax headers.
  tar --sort=name --mtime='@0' --numeric-owner --format=posix \
    --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    -C "$stage" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
}

engine_has() {
  local ref="$1" key="$2"
  [ "$("$docker_cli" image inspect -f '{{ index .Config.Labels "org.taskstore.inputs" }}' "$ref" 2>/dev/null || true)" = "$key" ]
}

build_image() {
  local name="$1"
  declare -F "${name}_inputs" >/dev/null || die "unknown image '$name' (redis, postgres, radosgw)"
  local list
  list="$(mktemp)"
  resolve_inputs "$name" | sort -u >"$list"
  local key tarball ref how imported sha
  key="$(input_key "$name" "$list")"
  tarball="$cache/$name-$key.tar"
  ref="taskstore-test/$name:local"
  if [ -s "$tarball" ] && [ -s "$tarball.sha256" ]; then
    how=reused
  else
    local started=$SECONDS
    build_tarball "$name" "$list" "$tarball"
    sha256sum "$tarball" | cut -d' ' -f1 >"$tarball.sha256"
    # Older tarballs of this image (other keys) are dead weight.
    find "$cache" -maxdepth 1 -name "$name-*.tar*" ! -name "$name-$key.tar*" -delete
    how=built
    log "$name: rootfs built in $((SECONDS - started)) s ($(du -h "$tarball" | cut -f1))"
  fi
  rm -f "$list"
  sha="$(cat "$tarball.sha256")"
  if engine_has "$ref" "$key"; then
    imported=present
  else
    local -a changes=()
    local change
    while read -r change; do changes+=(--change "$change"); done < <("${name}_changes")
    changes+=(--change "LABEL org.taskstore.inputs=$key org.taskstore.rootfs-sha256=$sha org.taskstore.built-from=debian-host-packages")
    "$docker_cli" import "${changes[@]}" "$tarball" "$ref" >/dev/null
    "$docker_cli" tag "$ref" "taskstore-test/$name:$key"
    imported=imported
  fi
  echo "$name $ref $sha $how $imported"
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(redis postgres radosgw)
for name in "${names[@]}"; do build_image "$name"; done
