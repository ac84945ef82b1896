#!/usr/bin/env bash
# Run `molecule test` for each scenario given; keep going after a failure and
# exit non-zero when any failed. Each scenario's log goes to artifacts/molecule/.
set -uo pipefail
# SCENARIO_TIMEOUT: seconds one scenario may take (the slowest takes about 20 min);
# past it the scenario fails by name and the next one runs.
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-2700}
cd "$(dirname "$0")/.."
# Images and measurements cached by content hash, shared by every checkout on this
# host (a fresh clone does not build the notebook image again when no input changed):
# TESTBED_CACHE_DIR, the same default as .config/molecule/config.yml.
cache=${TESTBED_CACHE_DIR:-/var/cache/testbed-hub}
mkdir -p artifacts/molecule artifacts/junit "$cache/notebook-images" "$cache/nist"
failed=()
for s in "$@"; do
  start=$(date +%s)
  printf '==> molecule test -s %s\n' "$s"
  if timeout --kill-after=60 "$SCENARIO_TIMEOUT" molecule test -s "$s" 2>&1 | tee "artifacts/molecule/$s.log" | grep -E --line-buffered \
       '(PASSED|FAILED|ERROR|passed|failed|fatal:|changed=|CRITICAL)'; then :; fi
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf '==> %s: stopped after %ss (SCENARIO_TIMEOUT); its instances destroyed\n' "$s" "$SCENARIO_TIMEOUT"
    molecule destroy -s "$s" >>"artifacts/molecule/$s.log" 2>&1 || true
  fi
  printf '==> %s: %s in %ss\n' "$s" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "$(( $(date +%s) - start ))"
  [ "$rc" -eq 0 ] || failed+=("$s")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "molecule: failed scenarios: ${failed[*]} (logs in artifacts/molecule/)" >&2
  exit 1
fi
