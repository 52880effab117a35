#!/usr/bin/env bash
# Makes sure the brokers the tests need are running on this machine, installing what is
# missing: RabbitMQ from Debian's packages, and the Kafka-compatible broker tansu from
# crates.io (about 13 minutes to build on 2 cores, once). Prints the environment the
# tests read.
# Used by scripts/test.sh and .ci/run; safe to run again.
set -euo pipefail

log() { echo "brokers: $*" >&2; }

rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

if [ -z "${AMQP_URL:-}" ]; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "installing RabbitMQ (Debian package rabbitmq-server)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
  fi
  if ! rabbit_up; then
    log "starting RabbitMQ"
    # Detached and with every standard stream redirected: a daemon that kept this script's
    # output open would make a caller reading it (`$(scripts/brokers.sh)`) wait forever.
    rabbitmq-server -detached </dev/null >/dev/null 2>&1 || true
  fi
  timeout 180 rabbitmqctl -q await_startup >&2
  echo "export AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'"
fi

tansu_up() { (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; }

if [ -z "${KAFKA_BROKERS:-}" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! tansu --version >/dev/null 2>&1; then
    log "installing tansu (cargo install tansu --locked --features dynostore,postgres)"
    cargo install tansu --locked --features dynostore,postgres >&2
  fi
  if ! tansu_up; then
    log "starting tansu on 127.0.0.1:9092 (in-memory storage)"
    dir="${TMPDIR:-/tmp}/seawall-tansu"
    mkdir -p "$dir"
    # The redirections cover the whole subshell: `&` applies to the `cd && …` list, and
    # a shell left holding this script's output would keep `$(scripts/brokers.sh)`
    # waiting for as long as the broker runs.
    (cd "$dir" && exec setsid tansu broker --listener-url tcp://127.0.0.1:9092 \
      --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/) \
      </dev/null >"$dir/broker.log" 2>&1 &
    for _ in $(seq 1 100); do tansu_up && break; sleep 0.1; done
    tansu_up || { log "tansu did not start; see $dir/broker.log"; exit 1; }
  fi
  echo "export KAFKA_BROKERS='127.0.0.1:9092'"
fi
