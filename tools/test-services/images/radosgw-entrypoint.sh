#!/bin/sh
# Entrypoint of taskstore-test/radosgw (built by build-images.sh from the host's Ceph 16
# packages): a throwaway single-node Ceph cluster and its S3 gateway, as
# tools/test-services/src/s3-radosgw.ts runs it on the host: one monitor, one OSD on memstore
# (RAM), auth off, msgr v1, then radosgw in the foreground as the container's main process.
#
# Environment: MON_PORT and RGW_PORT (required), RGW_BIND (default 127.0.0.1; 0.0.0.0 with port
# mapping), ACCESS_KEY and SECRET_KEY for the S3 user it creates.
set -eu
: "${MON_PORT:?MON_PORT is required}" "${RGW_PORT:?RGW_PORT is required}"
: "${RGW_BIND:=127.0.0.1}" "${ACCESS_KEY:=taskstore}" "${SECRET_KEY:=taskstore-secret}"
dir=/var/lib/ceph/cluster
conf="$dir/ceph.conf"
fsid="$(cat /proc/sys/kernel/random/uuid)"
osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
mkdir -p "$dir/mon" "$dir/osd" "$dir/run" "$dir/log" "$dir/rgw"

cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
mon allow pool size one = true
mon warn on pool no redundancy = false
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
mon data = $dir/mon
osd data = $dir/osd
keyring = $dir/keyring
debug ms = 0
debug rgw = 0
log to stderr = false
err to stderr = false
mon cluster log to stderr = false
[client.rgw]
rgw frontends = beast endpoint=$RGW_BIND:$RGW_PORT tcp_nodelay=1
rgw data = $dir/rgw
CONF

fail() {
  echo "taskstore-test/radosgw: $*" >&2
  for log in "$dir"/log/*.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; cat "$log" >&2; }
  done
  exit 1
}

# retry <seconds> <command...>: runs the command until it succeeds, for at most <seconds>.
retry() {
  limit=$(($1 * 4))
  shift
  n=0
  until "$@" >"$dir/last.out" 2>&1; do
    n=$((n + 1))
    [ "$n" -lt "$limit" ] || fail "gave up on: $* ($(cat "$dir/last.out"))"
    sleep 0.25
  done
}

osd_up() {
  ceph -c "$conf" osd stat -f json >"$dir/osd-stat.json" 2>&1 || return 1
  case "$(cat "$dir/osd-stat.json")" in *'"num_up_osds":1'*) return 0 ;; *) return 1 ;; esac
}

echo "taskstore-test/radosgw: creating the cluster (mon :$MON_PORT, rgw $RGW_BIND:$RGW_PORT)"
monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$MON_PORT]" "$dir/monmap" >/dev/null || fail "monmaptool failed"
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" || fail "ceph-mon --mkfs failed"
ceph-mon -f -c "$conf" -i a &
retry 30 ceph -c "$conf" --connect-timeout 10 osd create "$osd_uuid"
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 || fail "ceph-osd --mkfs failed"
retry 10 ceph -c "$conf" osd crush add osd.0 1.0 host=localhost root=default
ceph-osd -f -c "$conf" -i 0 &
retry 60 osd_up
retry 60 radosgw-admin -c "$conf" user create --uid taskstore --display-name "taskstore tests" \
  --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY"
echo "taskstore-test/radosgw: user created, starting radosgw"
exec radosgw -f -c "$conf" -n client.rgw
