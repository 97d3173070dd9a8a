#!/usr/bin/env bash
# Build the wheel and the sdist (`python -m build`), install each into a fresh virtual environment
# and smoke-test it there: version, py.typed, the claim registry, one real claim and its report.
# Usage: .ci/package_smoke.sh [PYTHON]   (PYTHON builds; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip install -q "build==1.6.1"
"$PY" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
ls "$work/dist"
python3 -m venv "$work/venv"
V="$work/venv/bin"
"$V/python" -m pip install -q --upgrade pip
"$V/python" -m pip install -q "torch==2.13.0"   # the CPU wheel here, as `make install` does
smoke() {
  (cd "$work" && "$V/dropreg" --version \
    && "$V/python" -c "import importlib.resources as r, dropreg; \
assert r.files('dropreg').joinpath('py.typed').is_file(), 'py.typed missing'; \
print('dropreg', dropreg.__version__, 'from', dropreg.__file__)" \
    && "$V/dropreg" list | tail -1 \
    && "$V/dropreg" reproduce --only 'cavazza2018.*' --out "$work/out-$1" > /dev/null 2>&1 \
    && test -s "$work/out-$1/report.html" && echo "$1: reproduce + report ok")
}
"$V/python" -m pip install -q "$work"/dist/*.whl
smoke wheel
"$V/python" -m pip uninstall -q -y dropreg
"$V/python" -m pip install -q "$work"/dist/*.tar.gz
smoke sdist
case "$(cd "$work" && "$V/python" -c 'import dropreg; print(dropreg.__file__)')" in
  "$work"/venv/*) echo "installed copy used (not the checkout)";;
  *) echo "the checkout was imported instead of the installed package"; exit 1;;
esac
