#!/usr/bin/env bash
# Build the project's wheel reproducibly on the control node and print its path.
# usage: build-wheel.sh PROJECT_DIR OUT_DIR PYTHON
# The source tree is copied first, so the build neither writes into the project
# (build/, *.egg-info) nor picks up stale files from an earlier build; with
# SOURCE_DATE_EPOCH fixed the same sources give a byte-identical wheel.
set -euo pipefail
project=${1:?project dir}
out=${2:?output dir}
python=${3:?python}
for f in pyproject.toml src; do
  if [ ! -e "$project/$f" ]; then
    echo "build-wheel: $project/$f not found: testbed_sim_project_dir must be the repository root" >&2
    exit 2
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tree" "$tmp/out" "$out"
cp -a "$project/pyproject.toml" "$project/src" "$tmp/tree/"
for f in README.md LICENSE; do
  if [ -e "$project/$f" ]; then cp -a "$project/$f" "$tmp/tree/"; fi
done
find "$tmp/tree" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
export SOURCE_DATE_EPOCH=315532800
"$python" -m pip wheel --no-deps --disable-pip-version-check -q -w "$tmp/out" "$tmp/tree" >&2
wheel=$(find "$tmp/out" -name 'testbed_hub-*.whl' | head -n 1)
if [ -z "$wheel" ]; then
  echo "build-wheel: pip produced no testbed_hub wheel" >&2
  exit 1
fi
name=$(basename "$wheel")
# Replace the file only when the content differs, so its mtime stays stable.
if ! cmp -s "$wheel" "$out/$name"; then
  cp "$wheel" "$out/$name.tmp"
  mv "$out/$name.tmp" "$out/$name"
fi
find "$out" -maxdepth 1 -name 'testbed_hub-*.whl' ! -name "$name" -delete
echo "$out/$name"
