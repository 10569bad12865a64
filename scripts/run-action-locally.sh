#!/usr/bin/env bash
# Run the s2l-scan GitHub Action's steps (scripts/action.sh, as action.yml calls them) on this
# machine, on the tiny reference model, without GitHub:
#
#   scripts/run-action-locally.sh [OUT]      # default OUT: s2l-out/action
#
# OUT/reference/        the tiny reference model and its audit data (built once, then reused)
# OUT/report/           s2l-report.json, s2l-report.html, s2l-summary.md, s2l-report.sarif
# OUT/step-summary.md   what the Action appends to $GITHUB_STEP_SUMMARY
# OUT/github-output.txt the step outputs (verdict, exit-code, report, ...)
#
# Exits like the Action's last step: with fail-on=gate (default; set S2L_FAIL_ON to change it)
# a failed gate exits 1 and an inconclusive one 6. The tiny reference model passed the gate
# when this was last run (issue 27, at bb2666e); the default reference (`make demo`) fails it. Uses the project's .venv (run `make install` first) unless S2L_SCAN names
# another command (and S2L_PYTHON the Python that reads the report's verdict).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-s2l-out/action}"
mkdir -p -- "$out"
scan_cmd="${S2L_SCAN:-$root/.venv/bin/s2l-scan}"

if [[ ! -d "$out/reference" ]]; then
  # shellcheck disable=SC2086  # S2L_SCAN may be a command with arguments
  $scan_cmd reference build --preset tiny --out "$out/reference"
fi

export S2L_SCAN="$scan_cmd" S2L_PYTHON="${S2L_PYTHON:-$root/.venv/bin/python}"
export S2L_MODEL="$out/reference/model" S2L_DATA="$out/reference/data"
export S2L_OUTPUT_DIR="$out/report" S2L_FAIL_ON="${S2L_FAIL_ON:-gate}"
export S2L_CONFIG="${S2L_CONFIG:-}" S2L_COMPARE="${S2L_COMPARE:-}"
export S2L_COMPARE_FAIL="${S2L_COMPARE_FAIL:-}"
export S2L_BUDGET="${S2L_BUDGET:-}"
export GITHUB_OUTPUT="$out/github-output.txt" GITHUB_STEP_SUMMARY="$out/step-summary.md"
: >"$GITHUB_OUTPUT"
: >"$GITHUB_STEP_SUMMARY"

bash "$root/scripts/action.sh" scan
S2L_EXIT_CODE="$(sed -n 's/^exit-code=//p' "$GITHUB_OUTPUT")"
S2L_VERDICT="$(sed -n 's/^verdict=//p' "$GITHUB_OUTPUT")"
export S2L_EXIT_CODE S2L_VERDICT
echo "step outputs ($GITHUB_OUTPUT):"
sed 's/^/  /' "$GITHUB_OUTPUT"
exec bash "$root/scripts/action.sh" enforce
