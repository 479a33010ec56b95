#!/usr/bin/env bash
# A core-only install (no extras) in a fresh venv, as `pip install .` leaves a user:
# the golden-model CLI works, and a command whose extra is missing names the extra and exits 2.
# Usage: scripts/check_core_install.sh [VENV_DIR]   (default: a temporary folder, removed after)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-$(mktemp -d)/core-venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip > /dev/null 2>&1 || true
if ! "$venv/bin/python" -m pip install -q . > "$venv/pip.log" 2>&1; then
    cat "$venv/pip.log"; echo "core-only install: pip install . failed"; exit 1
fi
for extra in amaranth cocotb torch matplotlib distributed; do
    if "$venv/bin/python" -c "import $extra" 2>/dev/null; then
        echo "core-only install: '$extra' is importable, but no extra was asked for"; exit 1
    fi
done
work=$(mktemp -d)
cd "$work"   # not the checkout: the installed package, not the source tree, is what runs
"$venv/bin/pascal-ref" --help > /dev/null
"$venv/bin/pascal-ref" demo > demo.txt
grep -q "verdict: OK (integer path exact)" demo.txt || { cat demo.txt; echo "core-only install: demo failed"; exit 1; }
"$venv/bin/pascal-ref" info digits-cnn > /dev/null
"$venv/bin/pascal-ref" verify digits-mlp --data digits --limit 50 > /dev/null
set +e
"$venv/bin/pascal-ref" hdl digits-mlp -o x 2> hint.txt; status=$?
set -e
hint=$(cat hint.txt)
if [ "$status" -ne 2 ] || [ "$(wc -l < hint.txt)" -ne 1 ] || ! grep -q "pip install 'pascal-ref\[hdl\]'" hint.txt; then
    echo "core-only install: 'pascal-ref hdl' without the hdl extra gave exit $status and: $hint"; exit 1
fi
echo "core-only install OK: demo, info, verify work; 'pascal-ref hdl' says: $hint"
