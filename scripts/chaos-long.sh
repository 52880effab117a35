#!/usr/bin/env bash
# The long version of the fault-injection suite (issue 7, docs/chaos.md): every
# seawall-chaos scenario on both brokers with 100,000 messages, 12 faults, a 30 s outage.
# Runs every scenario even after a failure, keeps each run's output in $CHAOS_LOG_DIR
# (default target/chaos-long) and exits 1 if any run failed. Hours on 2 cores.
#
#   scripts/chaos-long.sh                 # release build, then every run
#   MESSAGES=20000 scripts/chaos-long.sh  # a shorter pass
#   ONLY="kafka:sigkill rabbitmq:store-fault" scripts/chaos-long.sh
#   PROFILE=debug MESSAGES=500 scripts/chaos-long.sh   # a smoke test of this script
#
# Needs the brokers (scripts/brokers.sh starts them) and root for the store-fault runs
# (they mount the store's disk) and the RabbitMQ broker-restart run (a node of its own).
# The Kafka broker-restart run starts a tansu on PostgreSQL, whose SQL needs PostgreSQL 16
# or newer: scripts/postgres16.sh provides one.
set -uo pipefail
cd "$(dirname "$0")/.."

messages="${MESSAGES:-100000}"
logs="${CHAOS_LOG_DIR:-target/chaos-long}"
mkdir -p "$logs"
eval "$(bash scripts/brokers.sh)"
eval "$(bash scripts/postgres16.sh)"
profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --all-features --bin seawall --bin seawall-chaos || exit 1
else
  cargo build --all-features --bin seawall --bin seawall-chaos || exit 1
fi
chaos="${CARGO_TARGET_DIR:-target}/$profile/seawall-chaos"

# broker:scenario and its options. On tansu a Kafka worker restarted while its killed
# predecessor is still in the group can be left without partitions: --restart-delay 7s
# outlasts the 6 s session (docs/chaos.md).
runs=(
  "kafka:sigkill --kills 12 --restart-delay 7s"
  "rabbitmq:sigkill --kills 12"
  "kafka:sigterm --kills 12"
  "rabbitmq:sigterm --kills 12"
  "kafka:downstream-outage --outage 30s"
  "rabbitmq:downstream-outage --outage 30s"
  "kafka:slow-downstream"
  "rabbitmq:slow-downstream"
  "kafka:group-kill --kills 12 --restart-delay 7s"
  "rabbitmq:group-kill --kills 12"
  "rabbitmq:broker-restart --restarts 10 --broker-down 5s --produce-rate 1000"
  "kafka:broker-restart --restarts 10 --broker-down 5s --produce-rate 1000"
  "kafka:store-fault --store-fault disk-full --outage 30s"
  "rabbitmq:store-fault --store-fault read-only --outage 30s"
)
failed=()
for run in "${runs[@]}"; do
  target="${run%% *}"
  options="${run#"$target"}"
  broker="${target%%:*}"
  scenario="${target#*:}"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $target "* ]]; then continue; fi
  log="$logs/$broker-$scenario.log"
  echo "== $target ($messages messages$options) -> $log"
  # shellcheck disable=SC2086 # the options are words
  if "$chaos" --broker "$broker" --scenario "$scenario" --messages "$messages" \
    --deadline 60m $options >"$log" 2>&1; then
    echo "   OK: $(grep -E '^(lost|duplicate effects|reordered)' "$log" | tr -s ' ' | paste -sd ';')"
  else
    echo "   FAILED (see $log)"
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "chaos-long: failed: ${failed[*]}"
  exit 1
fi
echo "chaos-long: every run passed"
