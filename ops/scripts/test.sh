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
# schemathesis fuzzes the live gateway against its OpenAPI document
# (tests/tests/gateway_schemathesis.rs).
python3 -m pip install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
# The AsyncAPI project's own parser validates asyncapi.yaml (services/switchyard/tests/asyncapi.rs).
npm ci --prefix ops/asyncapi --no-audit --no-fund --silent
# promtool checks the alert rules and runs their unit tests
# (tests/tests/prometheus_rules.rs, ops/prometheus/tests/). Debian ships it in
# the prometheus package; installed once, without starting its daemon.
if ! command -v promtool >/dev/null 2>&1; then
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then as_root=(sudo -n); fi
  # No policy-rc.d (Docker images have one): add one that forbids starting
  # services, so installing does not leave a Prometheus running on :9090.
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  install_prometheus() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  }
  log=$(mktemp)
  installed=1
  { install_prometheus || { "${as_root[@]}" apt-get update -qq && install_prometheus; }; } >"$log" 2>&1 || installed=""
  if [[ -n "$added_policy" ]]; then "${as_root[@]}" rm -f /usr/sbin/policy-rc.d; fi
  if [[ -z "$installed" ]]; then
    cat "$log" >&2
    echo "could not install promtool (apt-get install prometheus)" >&2
    exit 1
  fi
  rm -f "$log"
  # Enabled for the next boot by the package; this machine only needs promtool.
  if [[ -d /run/systemd/system ]]; then "${as_root[@]}" systemctl disable --now --quiet prometheus.service || true; fi
fi
export SWITCHYARD_REQUIRE_PROMTOOL=1
# Headless Chromium renders the vendor scorecard's HTML report and the test
# looks for its charts in the DOM (services/switchyard/tests/scorecard.rs).
# Debian ships it as chromium; installed once.
if ! command -v chromium >/dev/null 2>&1; then
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then as_root=(sudo -n); fi
  install_chromium() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  }
  log=$(mktemp)
  if ! { install_chromium || { "${as_root[@]}" apt-get update -qq && install_chromium; }; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "could not install chromium (apt-get install chromium)" >&2
    exit 1
  fi
  rm -f "$log"
fi
export SWITCHYARD_REQUIRE_CHROMIUM=1
# Cargo.lock is audited against a local RustSec advisory database
# (tests/tests/advisories.rs); where one is found, a missing one later fails.
for db in "${SWITCHYARD_ADVISORY_DB:-}" "$PWD/../shared/advisory-db" /work/shared/advisory-db; do
  if [[ -n "$db" && -d "$db/crates" ]]; then
    export SWITCHYARD_ADVISORY_DB="$db" SWITCHYARD_REQUIRE_ADVISORY_DB=1
    break
  fi
done

# The crash test runs the worker binary as its own process.
cargo build --workspace --bins

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 2 "$@"
else
  cargo test --workspace --no-fail-fast "$@" -- --test-threads 2
fi
