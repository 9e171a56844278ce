#!/usr/bin/env bash
# Everything benchmarks/serve_peers.py needs beyond `make install`, on a fresh Debian/Ubuntu machine:
#   wrk                      (Debian package; installed here when run as root)
#   LitServe in .venv        (requirements-litserve.txt: adds packages, moves none of the product's pins)
#   benchmarks/.venv-mlserver (requirements-mlserver.txt: MLServer + the same Keras/TensorFlow, protobuf<7)
# Run from anywhere: benchmarks/peers/setup.sh  (PYTHON=python3.11 to choose the interpreter; MLServer
# 1.7.1 wants Python 3.9-3.12). Safe to run again: pip leaves satisfied pins alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
PEERS=benchmarks/peers
MLSERVER_VENV=benchmarks/.venv-mlserver

if ! command -v wrk >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
  else
    echo "serve_peers.py needs wrk: run 'sudo apt-get install -y wrk' (Debian/Ubuntu), then this again." >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "No .venv: run 'make install' first (the product's environment, where cnnkit and LitServe run)." >&2
  exit 1
fi
.venv/bin/python -m pip install --quiet -r "$PEERS/requirements-litserve.txt"
.venv/bin/python -m pip check

"$PYTHON" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))' || {
  echo "MLServer 1.7.1 needs Python 3.9-3.12; $PYTHON is $("$PYTHON" --version). Set PYTHON=python3.11." >&2
  exit 1
}
test -x "$MLSERVER_VENV/bin/python" || "$PYTHON" -m venv "$MLSERVER_VENV"
echo '*' > "$MLSERVER_VENV/.gitignore"  # keep the venv out of git, as Python >= 3.13's venv does itself
"$MLSERVER_VENV/bin/python" -m pip install --quiet -r "$PEERS/requirements-mlserver.txt"
"$MLSERVER_VENV/bin/python" -m pip check
echo "Ready: .venv/bin/python benchmarks/serve_peers.py RUN_OR_MODEL IMAGE"
