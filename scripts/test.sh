#!/usr/bin/env bash
# The whole test suite, against real brokers: starts (or installs) what is missing,
# points the tests at it, and runs `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The environment goes through a file, not `$(...)`: command substitution waits until
# every process holding its pipe exits, and the brokers started here keep running.
env_file="$(mktemp)"
trap 'rm -f "$env_file"' EXIT
scripts/brokers.sh >"$env_file"
# PostgreSQL 16 for the Kafka broker-restart chaos run (tansu's storage needs it).
scripts/postgres16.sh >>"$env_file"
. "$env_file"
export AMQP_URL="${AMQP_URL:?}" KAFKA_BROKERS="${KAFKA_BROKERS:?}" CHAOS_POSTGRES_URL="${CHAOS_POSTGRES_URL:?}"
echo "test.sh: brokers ready (AMQP_URL set, KAFKA_BROKERS=$KAFKA_BROKERS); running cargo test" >&2
cargo test --all-features "$@"
