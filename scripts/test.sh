#!/usr/bin/env bash
# The whole test suite, against real brokers: starts (or installs) what is missing,
# points the tests at it, and runs `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/brokers.sh)"
export AMQP_URL="${AMQP_URL:?}" KAFKA_BROKERS="${KAFKA_BROKERS:?}"
exec cargo test --all-features "$@"
