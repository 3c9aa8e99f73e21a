#!/usr/bin/env bash
# Starts a local tansu broker on 127.0.0.1:${SWITCHYARD_BROKER_PORT:-9092}
# unless something already listens there. Prints the broker address.
# Usage: ops/scripts/broker.sh start|stop
# SWITCHYARD_BROKER_LOG sets the broker's log filter (default warn), e.g.
# tansu_broker::coordinator=info to watch group joins; the log is in the cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${SWITCHYARD_BROKER_PORT:-9092}"
state="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}/run"
mkdir -p "$state"
pidfile="$state/tansu-$port.pid"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-start}" in
  start)
    if listening; then echo "127.0.0.1:$port"; exit 0; fi
    tansu="$("$here/install-tansu.sh")"
    # Advertise 127.0.0.1, not localhost: librdkafka may resolve localhost to ::1.
    RUST_LOG="${SWITCHYARD_BROKER_LOG:-${RUST_LOG:-warn}}" nohup "$tansu" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "${SWITCHYARD_BROKER_STORAGE:-memory://tansu/}" \
      >"$state/tansu-$port.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if listening; then echo "127.0.0.1:$port"; exit 0; fi
      sleep 0.1
    done
    echo "tansu did not start; see $state/tansu-$port.log" >&2
    exit 1
    ;;
  stop)
    # Waits for the process to end: a dying broker still serves the
    # connections it has, which would confuse an outage drill.
    if [[ -f "$pidfile" ]]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
