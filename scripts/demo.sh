#!/bin/sh
# `make run`: the rtp_cluster daemon in the foreground in front of two local
# relay doubles (tests/tools/rtpp_test_relay), a little traffic through it,
# `rtp_cluster_client ls` / `ls demo` / `workers`, then everything stopped.
# Everything lives in a temp dir and on loopback; nothing is installed.
#
#   scripts/demo.sh [BUILD_DIR]      (default: build)
set -eu

BUILD=${1:-build}
RELAY=$BUILD/tests/tools/rtpp_test_relay
LOADGEN=$BUILD/tests/tools/rtpp_loadgen
DAEMON=$BUILD/supervisor/rtp_cluster
CLIENT=$BUILD/cli/rtp_cluster_client
for bin in "$RELAY" "$LOADGEN" "$DAEMON" "$CLIENT"; do
  [ -x "$bin" ] || { echo "demo: $bin is missing; build first (make)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/rtp_cluster_demo.XXXXXX)
PIDS=""
cleanup() {
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  for pid in $PIDS; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# Waits until FILE contains a line matching PATTERN (at most 10 s).
wait_for() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1; fi
    sleep 0.1
  done
}

echo "== starting two relays (rtpp_test_relay)"
for n in 1 2; do
  "$RELAY" -s udp:127.0.0.1:0 -l 127.0.0.$n >"$DIR/relay$n.out" 2>&1 &
  PIDS="$PIDS $!"
  wait_for "$DIR/relay$n.out" '^READY'
done
R1=$(sed -n 's/^LISTENING udp://p' "$DIR/relay1.out")
R2=$(sed -n 's/^LISTENING udp://p' "$DIR/relay2.out")
echo "   relay1 on $R1, relay2 on $R2"

# The packaged example's first cluster, pointed at the relays above and at a
# control port picked by the system.
CONTROL_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$DIR/rtp_cluster.xml" <<EOF
<rtp_cluster_config>
  <rtp_cluster>
    <name>demo</name>
    <protocol>udp</protocol>
    <address>127.0.0.1:$CONTROL_PORT</address>
    <capacity_limit type="soft"/>
    <rtpproxy>
      <name>relay1</name>
      <protocol>udp</protocol>
      <address>$R1</address>
      <weight>100</weight>
      <capacity>2000</capacity>
      <status>ACTIVE</status>
    </rtpproxy>
    <rtpproxy>
      <name>relay2</name>
      <protocol>udp</protocol>
      <address>$R2</address>
      <weight>100</weight>
      <capacity>2000</capacity>
      <status>ACTIVE</status>
    </rtpproxy>
  </rtp_cluster>
</rtp_cluster_config>
EOF

echo "== starting rtp_cluster in the foreground (control socket udp:127.0.0.1:$CONTROL_PORT)"
"$DAEMON" -f -c "$DIR/rtp_cluster.xml" -P "$DIR/rtp_cluster.pid" -s "$DIR/admin.sock" -L "$DIR/rtp_cluster.log" \
  >"$DIR/daemon.out" 2>"$DIR/daemon.log" &
DAEMON_PID=$!
PIDS="$PIDS $DAEMON_PID"
wait_for "$DIR/daemon.out" '^READY'
wait_for "$DIR/daemon.log" 'MEMBER_ONLINE cluster=demo member=relay1'
wait_for "$DIR/daemon.log" 'MEMBER_ONLINE cluster=demo member=relay2'

echo "== 2 s of calls through the cluster (rtpp_loadgen)"
"$LOADGEN" -t "udp:127.0.0.1:$CONTROL_PORT" -w 16 -d 2 | grep -v '^RESULT'
echo "== 300 calls kept up"
"$LOADGEN" -t "udp:127.0.0.1:$CONTROL_PORT" --preload 300 | grep -v '^RESULT'
sleep 1.2  # one heartbeat, so that the relays' session counts show

for command in "ls" "ls demo" "workers"; do
  echo "== rtp_cluster_client $command"
  # shellcheck disable=SC2086
  "$CLIENT" -s "$DIR/admin.sock" $command
done

echo "== stopping (SIGTERM)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "   rtp_cluster exited 0"
PIDS=$(echo "$PIDS" | sed "s/ $DAEMON_PID//")
echo "== the daemon's log"
cat "$DIR/daemon.log"
