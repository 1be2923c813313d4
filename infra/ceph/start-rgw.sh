#!/usr/bin/env bash
# Starts a throwaway one-node Ceph cluster with the S3 gateway (RGW) on 127.0.0.1, for tests and local
# runs: one monitor, one OSD on memstore (RAM, nothing on disk but logs), no manager, no auth inside the
# cluster (loopback only), v1 messenger; then creates an S3 user. Ready in about 15 s.
#
#   infra/ceph/start-rgw.sh DIR RGW_PORT MON_PORT ACCESS_KEY SECRET_KEY
#
# DIR holds the config, logs and the daemons' pids (DIR/pids); stop with infra/ceph/stop-rgw.sh DIR.
# Needs Debian's radosgw ceph-mon ceph-osd ceph-common (scripts/test installs them).
set -euo pipefail

if [ $# -ne 5 ]; then
    echo "usage: $0 DIR RGW_PORT MON_PORT ACCESS_KEY SECRET_KEY" >&2
    exit 2
fi
DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
RGW_PORT="$2"
MON_PORT="$3"
ACCESS_KEY="$4"
SECRET_KEY="$5"
CONF="$DIR/ceph.conf"
FSID="$(python3 -c 'import uuid; print(uuid.uuid4())')"

mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon" "$DIR/osd/ceph-0" "$DIR/rgw"
: > "$DIR/pids"
cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind msgr2 = false
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/\$cluster.\$channel.log
pid file = $DIR/run/\$name.pid
keyring = $DIR/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
[mon]
mon data = $DIR/mon/ceph-\$id
[osd]
osd data = $DIR/osd/ceph-\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd max object name len = 460
osd max object namespace len = 64
# No monitor commands from the OSD as it starts (crush set-device-class, crush create-or-move): this script
# places it in the CRUSH map instead. A Ceph 16 daemon's monitor client starts with a zero fsid and learns
# the real one from the first monmap; the OSD sends those commands as soon as it has authenticated, which
# on this 2-core machine was before the monmap arrived in 2 starts of 7: the monitor refused them ("wrong
# fsid"), the OSD exited, and RGW waited for it until the test's timeout.
osd class update on start = false
osd crush update on start = false
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DIR/rgw
rgw dns name = localhost
CONF

start() {  # start NAME COMMAND...: runs a daemon in the foreground mode, in the background, pid recorded
    local name="$1"
    shift
    "$@" > "$DIR/log/$name.out" 2>&1 &
    echo "$!" >> "$DIR/pids"
}

ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' > /dev/null
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" > /dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
start mon ceph-mon -c "$CONF" -i a -f
# The monitor answers a moment after it starts (before that the CLI fails, even with EPERM).
for _ in $(seq 1 150); do
    ceph -c "$CONF" --connect-timeout 5 -s > /dev/null 2>&1 && break
    sleep 0.2
done
ceph -c "$CONF" --connect-timeout 30 osd create > /dev/null
if ! out="$(ceph -c "$CONF" --connect-timeout 30 osd crush add osd.0 1.0 root=default 2>&1)"; then
    echo "$out" >&2
    exit 1
fi
ceph-osd -c "$CONF" -i 0 --mkfs > "$DIR/log/osd-mkfs.out" 2>&1
start osd ceph-osd -c "$CONF" -i 0 -f
start rgw radosgw -c "$CONF" -n client.rgw.a -f

alive() {  # whether every daemon started so far still runs
    local pid
    while read -r pid; do kill -0 "$pid" 2> /dev/null || return 1; done < "$DIR/pids"
}

for _ in $(seq 1 600); do
    if ! alive; then
        echo "a Ceph daemon exited during start-up; logs in $DIR/log" >&2
        exit 1
    fi
    if curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then
        radosgw-admin -c "$CONF" user create --uid=cinescale --display-name=CineScale \
            --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" > /dev/null
        echo "RGW listening on http://127.0.0.1:$RGW_PORT"
        exit 0
    fi
    sleep 0.1
done
echo "RGW did not start; logs in $DIR/log" >&2
exit 1
