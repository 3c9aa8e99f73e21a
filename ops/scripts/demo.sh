#!/usr/bin/env bash
# The main job: the local stack with a payout demo. Installs and starts the
# tansu broker if nothing listens on 127.0.0.1:9092, then runs `switchyard up`
# (schema registry stand-in, Stripe and Adyen simulators, payout worker on the
# embedded SQLite store). Extra arguments go to `switchyard up`, e.g.
# `ops/scripts/demo.sh --keep-running`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ops/scripts/broker.sh start >/dev/null
exec cargo run --quiet -p switchyard -- up "$@"
