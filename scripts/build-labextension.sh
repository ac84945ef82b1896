#!/usr/bin/env bash
# Build the JupyterLab extension @testbed/job-parameters (the Create Job form filled
# with the notebook's parameters) from packages/testbed-notebook/labextension into
# packages/testbed-notebook/src/testbed/job_parameters/labextension, where the
# testbed-notebook wheel takes it from (its data files: share/jupyter/labextensions).
#
# The built files are committed: a station, the control node and CI never need
# Node.js. This script is for whoever changes the extension's source. It needs node
# (>= 18) and npm, and a network path to PyPI and the npm registry; JupyterLab's
# builder runs from a virtualenv of its own (.cache/labext-venv, pinned below).
# It records the digest of the sources it built from in built-from.sha256 next to
# the sources; tests/unit/notebook/test_job_parameters.py fails when the sources
# change and the build is not redone. The build is reproducible: the same sources
# give the same bytes.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/packages/testbed-notebook/labextension"
OUT="$ROOT/packages/testbed-notebook/src/testbed/job_parameters/labextension"
JUPYTERLAB="jupyterlab==4.5.11"
VENV="$ROOT/.cache/labext-venv"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-labextension: $tool is missing; install Node.js 18 or later with npm" \
         "(Debian: apt-get install nodejs npm) and run this again" >&2
    exit 2
  fi
done

if [ "$("$VENV/bin/pip" freeze 2>/dev/null | grep -i '^jupyterlab==')" != "$JUPYTERLAB" ]; then
  echo "==> builder virtualenv with $JUPYTERLAB"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$JUPYTERLAB"
fi

# Built in a copy outside the tree (node_modules never lands where the linters
# read), laid out as in the tree so that the relative outputDir the build records in
# its package.json is the same, and always at the same absolute path: webpack's
# module ids depend on where the build runs, so the same path gives the same bytes.
WORK="${LABEXTENSION_WORK:-/var/tmp/testbed-hub-labextension}"
rm -rf "$WORK"
mkdir -p "$WORK/labextension"
cp -r "$SRC/package.json" "$SRC/package-lock.json" "$SRC/src" "$WORK/labextension/"
cd "$WORK/labextension"
echo "==> npm ci (package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error
echo "==> jupyter labextension build"
PATH="$VENV/bin:$PATH" jupyter labextension build . >/dev/null 2>"$WORK/build.log" \
  || { cat "$WORK/build.log" >&2; exit 1; }
rm -rf "$OUT"
cp -r "$WORK/src/testbed/job_parameters/labextension" "$OUT"
# what the build came from: tests compare it with the sources in the tree
python3 "$ROOT/scripts/labextension_digest.py" "$SRC" > "$SRC/built-from.sha256"
echo "==> built: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
