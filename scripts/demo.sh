#!/usr/bin/env bash
# The sample flow, end to end on this machine: RabbitMQ and the Kafka-API broker tansu
# (started or installed by scripts/brokers.sh), a downstream HTTP service with realistic
# troubles, a `seawall run` worker with examples/demo.toml, a producer for a sample
# workload, and a report of what the downstream received. Exits non-zero if anything was
# lost, duplicated or reordered. Safe to run again: every run uses its own topic, queue,
# exchange, consumer group and store.
#
# Environment: DEMO_COUNT (messages per broker, default 200), DEMO_TIMEOUT (default 180s),
# DEMO_DOWNSTREAM_PORT (18080), DEMO_ADMIN_PORT (9464). Logs stay in a temp directory.
set -euo pipefail
cd "$(dirname "$0")/.."

count="${DEMO_COUNT:-200}"
timeout="${DEMO_TIMEOUT:-180s}"
downstream_port="${DEMO_DOWNSTREAM_PORT:-18080}"
admin_port="${DEMO_ADMIN_PORT:-9464}"
run_id="$(date +%s)-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/seawall-demo.XXXXXX")"
target="${CARGO_TARGET_DIR:-target}/debug"

log() { echo "demo: $*" >&2; }

downstream_pid=""
worker_pid=""
cleanup() {
  status=$?
  for pid in $worker_pid $downstream_pid; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  log "logs are in $work (worker.log, downstream.log, produce.txt, report.txt)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The environment goes through a file, not `$(...)`: command substitution waits until
# every process holding its pipe exits, and the brokers started here keep running.
scripts/brokers.sh >"$work/brokers.env"
. "$work/brokers.env"
amqp_url="${AMQP_URL:?}"
kafka_brokers="${KAFKA_BROKERS:?}"

log "building (cargo build --bins)"
cargo build --quiet --bins
seawall="$target/seawall"
demo="$target/seawall-demo"

# This run's names, in a copy of the example config.
topic="demo-orders-$run_id"
queue="demo-payments-$run_id"
config="$work/demo.toml"
sed -e "s|\"demo-orders\"|\"$topic\"|" \
    -e "s|group = \"seawall-demo\"|group = \"seawall-demo-$run_id\"|" \
    -e "s|queue = \"demo-payments\"|queue = \"$queue\"|" \
    -e "s|exchange = \"demo-payments\"|exchange = \"$queue\"|" \
    -e "s|path = \"./seawall-demo-data\"|path = \"$work/store\"|" \
    -e "s|127.0.0.1:18080|127.0.0.1:$downstream_port|g" \
    -e "s|127.0.0.1:9464|127.0.0.1:$admin_port|" \
    -e "s|127.0.0.1:9092|$kafka_brokers|" \
    -e "s|amqp://guest:guest@127.0.0.1:5672/%2f|$amqp_url|" \
    examples/demo.toml >"$config"
for name in "$topic" "$queue" "$work/store"; do
  grep -qF "$name" "$config" || { log "could not set $name in $config"; exit 1; }
done

log "starting the downstream on 127.0.0.1:$downstream_port"
"$demo" downstream --listen "127.0.0.1:$downstream_port" </dev/null >"$work/downstream.log" 2>&1 &
downstream_pid=$!

# The topic exists before the worker subscribes, so the consumer is assigned it at once.
"$demo" setup --kafka "$kafka_brokers" --topic "$topic" --partitions 4

log "starting the worker: seawall run --config $config"
RUST_LOG="${RUST_LOG:-seawall=info}" "$seawall" run --config "$config" \
  </dev/null >"$work/worker.log" 2>&1 &
worker_pid=$!

ready=""
for _ in $(seq 1 300); do
  kill -0 "$worker_pid" 2>/dev/null || { log "the worker exited; see $work/worker.log"; tail -20 "$work/worker.log" >&2; exit 1; }
  if "$demo" probe "http://127.0.0.1:$admin_port/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || { log "the worker was not ready within 60s; see $work/worker.log"; exit 1; }
log "worker ready"

"$demo" produce --kafka "$kafka_brokers" --topic "$topic" --amqp "$amqp_url" \
  --exchange "$queue" --count "$count" --run-id "$run_id" | tee "$work/produce.txt"
expect="$(sed -n 's/^expect-delivered: //p' "$work/produce.txt")"
[ -n "$expect" ] || { log "the producer did not say what to expect"; exit 1; }

report_status=0
"$demo" report --downstream "http://127.0.0.1:$downstream_port" \
  --admin "http://127.0.0.1:$admin_port" --expect-delivered "$expect" --timeout "$timeout" \
  | tee "$work/report.txt" || report_status=$?

log "stopping the worker with SIGTERM"
kill -TERM "$worker_pid"
# It drains in-flight messages and flushes its store; a worker that hangs is a failure.
for _ in $(seq 1 300); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$worker_pid" 2>/dev/null; then
  log "the worker did not exit within 30s of SIGTERM; killing it"
  kill -KILL "$worker_pid"
fi
worker_status=0
wait "$worker_pid" || worker_status=$?
worker_pid=""
if [ "$worker_status" -eq 0 ]; then
  log "the worker drained and exited cleanly (status 0)"
else
  log "the worker exited with status $worker_status; see $work/worker.log"
  tail -20 "$work/worker.log" >&2
fi
[ "$report_status" -eq 0 ] && [ "$worker_status" -eq 0 ]
