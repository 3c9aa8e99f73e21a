#!/usr/bin/env bash
# The test command: starts what the tests need, then runs every test.
#   - a tansu broker on 127.0.0.1:9092 (installed and cached by install-tansu.sh)
#   - PostgreSQL at $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
# Extra arguments go to the test runner, e.g. `ops/scripts/test.sh payouts`.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
started_broker=""
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  ops/scripts/broker.sh start >/dev/null
  started_broker=1
fi
cleanup() { if [[ -n "$started_broker" ]]; then ops/scripts/broker.sh stop; fi; }
trap cleanup EXIT
export SWITCHYARD_TEST_BROKERS="127.0.0.1:9092"

# Reference webhook signers (tests/reference) are Python: the Standard
# Webhooks reference library and `cryptography`. Installed once, then cached.
python3 -m pip install --quiet --disable-pip-version-check -r tests/reference/requirements.txt
# The vendors' official SDKs (stripe, Adyen, onfido-python), run against
# `switchyard sandbox` by services/switchyard/tests/sandbox_sdks.rs.
python3 -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
# The AsyncAPI project's own parser validates asyncapi.yaml (services/switchyard/tests/asyncapi.rs).
npm ci --prefix ops/asyncapi --no-audit --no-fund --silent

# The crash test runs the worker binary as its own process.
cargo build --workspace --bins

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 2 "$@"
else
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 2
fi
