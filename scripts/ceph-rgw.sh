#!/usr/bin/env bash
# A throw-away single-host Ceph cluster with radosgw on 127.0.0.1, for the S3 provider's tests,
# benchmarks and local experiments: one monitor, one memstore OSD (data in RAM), cephx off, no
# manager, one S3 user with known keys and one bucket. Installs nothing: the Debian packages
# ceph-mon ceph-osd radosgw ceph-common (plus curl and uuid-runtime) must be there already.
#
#   scripts/ceph-rgw.sh start DIR      start everything below DIR (created; must not exist, be
#                                      empty or be a previous cluster's), print the env lines
#   scripts/ceph-rgw.sh env DIR        print the env lines of a running cluster again
#   scripts/ceph-rgw.sh stop DIR       stop every daemon of the cluster and remove DIR
#   scripts/ceph-rgw.sh rgw-stop DIR   stop radosgw only (SIGKILL: a crash, for fault tests)
#   scripts/ceph-rgw.sh rgw-start DIR  start radosgw again on the same port
#
# Environment for start: RGW_PORT, MON_PORT (default: free random ports), S3_ACCESS_KEY,
# S3_SECRET_KEY, S3_BUCKET (defaults below), RGW_WAIT_S (seconds radosgw may take to answer,
# default 60), RGW_MIN_PART_SIZE (default 1048576: multipart parts down to 1 MiB, so tests
# need not move 5 MiB parts), OSD_BYTES (memstore capacity,
# default 4 GiB, allocated lazily), WATCH_PID (stop the cluster by itself once that process
# is gone: tests pass their own pid so that a killed test run leaves no daemons behind).
#
# The env lines (also in DIR/env) look like `export S3_ENDPOINT=http://127.0.0.1:PORT`:
# S3_ENDPOINT, S3_REGION, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Use them with
# `eval "$(scripts/ceph-rgw.sh env DIR)"`. Progress lines go to stderr, daemon logs to DIR/log.
set -Eeuo pipefail # -E: functions inherit the ERR trap of a failing start

usage() {
  echo "usage: $0 start|env|stop|rgw-stop|rgw-start DIR" >&2
  exit 2
}
if [ "${1:-}" = __watch ] && [ $# -eq 3 ]; then
  # Internal: stop the cluster in $2 once process $3 has exited (or the cluster is gone).
  while kill -0 "$3" 2>/dev/null && [ -f "$2/ceph.conf" ]; do sleep 1; done
  [ -f "$2/ceph.conf" ] && exec bash "$0" stop "$2"
  exit 0
fi
[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
case "$DIR" in
  /*) ;;
  *) DIR="$(pwd)/$DIR" ;;
esac

t0=$(date +%s%N)
log() { printf '[ceph-rgw %5dms] %s\n' $((($(date +%s%N) - t0) / 1000000)) "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

random_free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if port_free "$p"; then
      echo "$p"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

# Waits until `kill -0` fails for every pid given, then SIGKILLs the rest (1 s at most: the
# data is thrown away anyway).
wait_gone() {
  local pid
  for _ in $(seq 1 10); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return
    sleep 0.1
  done
  for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
}

pids_of() { # pid files of DIR/run matching a glob
  local f
  for f in "$DIR"/run/$1.pid; do [ -f "$f" ] && cat "$f"; done
  return 0
}

is_cluster_dir() { [ -f "$DIR/ceph.conf" ] && [ -f "$DIR/rgw_port" ]; }

stop_all() {
  is_cluster_dir || { [ -d "$DIR" ] && [ -z "$(ls -A "$DIR")" ] && rmdir "$DIR"; return 0; }
  local pids
  pids=$(pids_of '*')
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone $pids
  fi
  rm -rf "$DIR"
}

rgw_url() { echo "http://127.0.0.1:$(cat "$DIR/rgw_port")/"; }

# Fails (return, not exit: a failing start must reach its ERR trap, which prints the logs and
# stops the daemons already running) when radosgw does not answer within RGW_WAIT_S seconds.
wait_rgw() {
  local deadline=$(($(date +%s) + ${RGW_WAIT_S:-60}))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    curl -s -o /dev/null --max-time 1 "$(rgw_url)" && return 0
    sleep 0.1
  done
  echo "radosgw did not answer on $(rgw_url)" >&2
  return 1
}

start_rgw() {
  export CEPH_CONF="$DIR/ceph.conf"
  # radosgw forks into the background once it has reached the monitor.
  timeout 60 radosgw -n client.rgw.gw </dev/null >>"$DIR/log/rgw-start.log" 2>&1
  wait_rgw
}

stop_rgw() {
  local pids
  pids=$(pids_of 'client.rgw.gw')
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_gone $pids
  rm -f "$DIR/run/client.rgw.gw.pid" "$DIR/run/client.rgw.gw.asok"
}

start() {
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
    is_cluster_dir || { echo "$DIR exists and is not a cluster directory" >&2; exit 1; }
    stop_all
  fi
  local rgw_port=${RGW_PORT:-$(random_free_port)}
  local mon_port=${MON_PORT:-$(random_free_port)}
  local access=${S3_ACCESS_KEY:-stowage-test-access}
  local secret=${S3_SECRET_KEY:-stowage-test-secret-key}
  local bucket=${S3_BUCKET:-stowage}
  local min_part=${RGW_MIN_PART_SIZE:-1048576}
  local osd_bytes=${OSD_BYTES:-$((4 * 1024 * 1024 * 1024))}
  mkdir -p "$DIR"/{mon,osd,rgw,log,run,crash}
  echo "$rgw_port" >"$DIR/rgw_port"
  # A failed start leaves nothing running (the logs are printed first).
  trap 'status=$?; tail -n 20 "$DIR"/log/*.log >&2 || true; stop_all; exit $status' ERR
  export CEPH_CONF="$DIR/ceph.conf"
  local fsid
  fsid=$(uuidgen)
  cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
crash dir = $DIR/crash
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
[mon]
mon data = $DIR/mon/\$name
[osd]
osd data = $DIR/osd/\$id
osd objectstore = memstore
memstore device bytes = $osd_bytes
osd max object name len = 460
osd max object namespace len = 64
osd memory target = 536870912
[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw data = $DIR/rgw
rgw dns name = localhost
rgw enable usage log = false
rgw multipart min part size = $min_part
EOF
  log "mon: mkfs (mon port $mon_port)"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$DIR/monmap" >>"$DIR/log/mon-mkfs.log" 2>&1
  ceph-mon -i a </dev/null >>"$DIR/log/mon-start.log" 2>&1
  timeout 60 ceph -s >/dev/null
  log "mon: up"
  local osd_uuid osd_id
  osd_uuid=$(uuidgen)
  osd_id=$(ceph osd new "$osd_uuid")
  mkdir -p "$DIR/osd/$osd_id"
  ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/osd-mkfs.log" 2>&1
  ceph-osd -i "$osd_id" </dev/null >>"$DIR/log/osd-start.log" 2>&1
  for _ in $(seq 1 300); do
    ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
    sleep 0.2
  done
  log "osd: up"
  # radosgw creates its pools one after the other, waiting for each; created here in parallel
  # they are ready sooner (the "rgw" application tag only silences a health warning).
  local pool
  for pool in .rgw.root default.rgw.log default.rgw.control default.rgw.meta \
    default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec; do
    (ceph osd pool create "$pool" 1 1 && ceph osd pool application enable "$pool" rgw) \
      >>"$DIR/log/pools.log" 2>&1 &
  done
  wait
  log "pools: created"
  start_rgw
  log "rgw: answering on $(rgw_url)"
  radosgw-admin user create --uid=stowage-test --display-name=stowage-test \
    --access-key="$access" --secret-key="$secret" >/dev/null 2>>"$DIR/log/rgw-admin.log"
  # radosgw-admin has no "bucket create": an S3 PUT Bucket, signed by curl (which, in Debian
  # 12's version, leaves out the payload hash header RGW needs).
  local created=0
  for _ in $(seq 1 50); do
    local code
    code=$(curl -s -o "$DIR/log/bucket-create.out" -w '%{http_code}' -X PUT \
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
      --aws-sigv4 "aws:amz:default:s3" --user "$access:$secret" "$(rgw_url)$bucket") || true
    if [ "$code" = 200 ]; then
      created=1
      break
    fi
    sleep 0.2
  done
  if [ $created = 0 ]; then
    echo "cannot create bucket $bucket: $(cat "$DIR/log/bucket-create.out")" >&2
    false
  fi
  log "rgw: user and bucket $bucket created"
  cat >"$DIR/env" <<EOF
export S3_ENDPOINT=http://127.0.0.1:$rgw_port
export S3_REGION=default
export S3_BUCKET=$bucket
export AWS_ACCESS_KEY_ID=$access
export AWS_SECRET_ACCESS_KEY=$secret
EOF
  trap - ERR
  if [ -n "${WATCH_PID:-}" ]; then
    setsid bash "$0" __watch "$DIR" "$WATCH_PID" </dev/null >/dev/null 2>&1 &
  fi
  cat "$DIR/env"
}

case "$CMD" in
  start) start ;;
  env)
    is_cluster_dir || { echo "$DIR is not a running cluster" >&2; exit 1; }
    cat "$DIR/env"
    ;;
  stop) stop_all ;;
  rgw-stop)
    is_cluster_dir || { echo "$DIR is not a running cluster" >&2; exit 1; }
    stop_rgw
    ;;
  rgw-start)
    is_cluster_dir || { echo "$DIR is not a running cluster" >&2; exit 1; }
    start_rgw
    ;;
  *) usage ;;
esac
