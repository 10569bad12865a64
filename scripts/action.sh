#!/usr/bin/env bash
# The steps of the s2l-scan GitHub Action (action.yml), kept here so that they can be read,
# linted and run locally (scripts/run-action-locally.sh) exactly as CI runs them.
#
#   scripts/action.sh install   pip-install torch (CPU wheels) and s2l-scan
#   scripts/action.sh scan      scan, write the reports, the step summary and the step outputs
#   scripts/action.sh enforce   exit non-zero according to fail-on
#
# Every input arrives as an environment variable (never spliced into the script by the runner),
# so a model path such as `x"; curl ...` is only ever a file name.
set -euo pipefail

die() { echo "s2l-scan action: $*" >&2; exit 4; }

check_fail_on() {
  case "${S2L_FAIL_ON:-gate}" in
    gate | error | never) ;;
    *) die "fail-on must be gate, error or never; got '${S2L_FAIL_ON}'" ;;
  esac
}

# A path input that cannot reach s2l-scan as a path is refused, not passed on: one that starts
# with "-" would be read as an option (a model "--version" exits 0 and would report a pass),
# and a newline could forge a step output.
check_path() {  # input-name value
  [[ "$2" != -* ]] || die "$1 '$2' starts with '-' and would be read as an option; write it as ./$2"
  [[ "$2" != *$'\n'* ]] || die "$1 contains a newline"
}

install() {
  case "${S2L_CACHE_INPUT:-true}" in
    true | false) ;;
    *) die "cache must be true or false; got '${S2L_CACHE_INPUT}'" ;;
  esac
  local python="${S2L_PYTHON:-python}"
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    # the default torch wheel pulls CUDA (gigabytes); the scan runs on the CPU
    "$python" -m pip install --quiet torch torchvision --index-url "$TORCH_INDEX_URL"
  fi
  "$python" -m pip install --quiet "${S2L_PACKAGE:-${GITHUB_ACTION_PATH:?}}"
}

output() {  # name value: one step output, refusing values that could forge others
  [[ "$2" != *$'\n'* ]] || die "output $1 contains a newline"
  echo "$1=$2" >>"${GITHUB_OUTPUT:?}"
}

scan() {
  check_fail_on
  [[ -n "${S2L_MODEL:-}" ]] || die "the model input is required"
  local name value
  for name in model data config compare output-dir; do
    value="$(input_value "$name")"
    [[ -z "$value" ]] || check_path "$name" "$value"
  done
  if [[ "${S2L_UPLOAD_SARIF:-false}" == true ]]; then
    echo "::warning::s2l-scan action: upload-sarif is no longer done by the Action (it failed the job of a private repository without code scanning); add a github/codeql-action/upload-sarif step with sarif_file: \${{ steps.<id>.outputs.sarif }} (README, GitHub Action)"
  fi
  local out="${S2L_OUTPUT_DIR:-s2l-report}"
  mkdir -p -- "$out"
  local json="$out/s2l-report.json" html="$out/s2l-report.html"
  local markdown="$out/s2l-summary.md" sarif="$out/s2l-report.sarif"
  # an earlier run's reports never stand for this one's
  rm -f -- "$json" "$html" "$markdown" "$sarif"
  local args=(scan "$S2L_MODEL" --report-json "$json" --report-html "$html"
              --report-markdown "$markdown" --report-sarif "$sarif")
  [[ -z "${S2L_DATA:-}" ]] || args+=(--data "$S2L_DATA")
  [[ -z "${S2L_CONFIG:-}" ]] || args+=(--config "$S2L_CONFIG")
  [[ -z "${S2L_COMPARE:-}" ]] || args+=(--compare "$S2L_COMPARE")
  [[ -z "${S2L_COMPARE_FAIL:-}" ]] || args+=("--compare-fail=$S2L_COMPARE_FAIL")
  # --name=value: a value that starts with "-" stays a value, never becomes an option
  if [[ -n "${S2L_THREADS:-}" ]]; then
    [[ "$S2L_THREADS" =~ ^[1-9][0-9]*$ ]] || die "threads must be a positive integer; got '$S2L_THREADS'"
    args+=("--threads=$S2L_THREADS")
  fi
  [[ -z "${S2L_DEVICE:-}" ]] || args+=("--device=$S2L_DEVICE")
  case "${S2L_EVIDENCE:-false}" in
    true) args+=("--evidence-dir=$out/evidence") ;;
    false) ;;
    *) die "evidence must be true or false; got '${S2L_EVIDENCE}'" ;;
  esac
  extra_args
  args+=("${extra[@]}")
  [[ -z "${S2L_BUDGET:-}" ]] || args+=("--budget=$S2L_BUDGET")
  local rc=0
  # S2L_SCAN is the command to run (unquoted on purpose: e.g. ".venv/bin/python -m s2l_scan");
  # it is set by scripts/run-action-locally.sh, never from an action input
  ${S2L_SCAN:-s2l-scan} "${args[@]}" || rc=$?
  if [[ "$rc" -le 1 && ! -f "$json" ]]; then
    # exit 0 or 1 without a JSON report: no scan completed (never a pass)
    echo "s2l-scan action: the scan exited $rc but wrote no report; treating it as a scan error" >&2
    rc=2
  fi
  local verdict
  verdict="$(verdict_of "$rc" "$json")"
  output verdict "$verdict"
  output exit-code "$rc"
  output report-dir "$out"
  [[ ! -f "$json" ]] || output report "$json"
  [[ ! -f "$html" ]] || output html "$html"
  [[ ! -f "$markdown" ]] || output markdown "$markdown"
  [[ ! -f "$sarif" ]] || output sarif "$sarif"
  if [[ -f "$markdown" ]]; then
    cat -- "$markdown" >>"${GITHUB_STEP_SUMMARY:?}"
  else
    printf '## s2l-scan: no report\n\nThe scan ended with exit code %s (%s) before writing a report; see the log of this step.\n' \
      "$rc" "$(describe "$rc")" >>"${GITHUB_STEP_SUMMARY:?}"
  fi
  echo "s2l-scan action: verdict $verdict (exit code $rc: $(describe "$rc")); reports in $out"
}

input_value() {  # input-name: its value, from the S2L_* variable the Action sets
  case "$1" in
    model) echo "${S2L_MODEL:-}" ;;
    data) echo "${S2L_DATA:-}" ;;
    config) echo "${S2L_CONFIG:-}" ;;
    compare) echo "${S2L_COMPARE:-}" ;;
    output-dir) echo "${S2L_OUTPUT_DIR:-}" ;;
  esac
}

# The verdict output: the report's own verdict, and only when the report exists and says what
# the exit code says (0 passed, 1 failed, 6 inconclusive). Anything else is "error": a scan that
# did not complete, or an exit code without its report, never reads as a pass.
verdict_of() {  # exit-code json-report
  local expected
  case "$1" in
    0) expected=passed ;;
    1) expected=failed ;;
    6) expected=inconclusive ;;
    *) echo error; return ;;
  esac
  [[ -f "$2" ]] || { echo error; return; }
  local found
  found="$("${S2L_PYTHON:-python}" - "$2" <<'PY' 2>/dev/null || true
import json, sys
try:
    verdict = json.load(open(sys.argv[1], encoding="utf-8"))["verdict"]
except Exception:
    sys.exit(0)
outcome = verdict.get("outcome") if isinstance(verdict, dict) else None
if outcome in ("passed", "failed", "inconclusive"):
    print(outcome)
elif isinstance(verdict, dict) and isinstance(verdict.get("passed"), bool):
    # a report without the three outcomes: a pass, or not a pass (failed or inconclusive)
    print("passed" if verdict["passed"] else "not-passed")
PY
)"
  if [[ "$found" == "$expected" || ( "$found" == not-passed && "$expected" != passed ) ]]; then
    echo "$expected"
  else
    echo "s2l-scan action: exit code $1 but the report's verdict is '${found:-unreadable}'; verdict: error" >&2
    echo error
  fi
}

# The extra-args input: one argument per line, each taken as it is (no word splitting, no
# globbing, no shell); options the Action sets from its own inputs are refused.
extra_args() {
  extra=()
  local line name
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%$'\r'}"
    [[ "$line" =~ [^[:space:]] ]] || continue
    name="${line%%=*}"
    case "$name" in
      --report-* | --data | --config | --compare | --compare-fail | --threads | --device \
        | --evidence-dir | --budget | --cache-dir)
        die "extra-args: $name is set by the Action; use its input instead" ;;
    esac
    extra+=("$line")
  done <<<"${S2L_EXTRA_ARGS:-}"
}

describe() {
  case "$1" in
    0) echo "passed" ;;
    1) echo "gate failed" ;;
    2) echo "scan error" ;;
    3) echo "nothing scanned" ;;
    4) echo "usage error" ;;
    6) echo "inconclusive: the audit could show neither a leak nor safety" ;;
    *) echo "crashed" ;;
  esac
}

enforce() {
  check_fail_on
  local rc="${S2L_EXIT_CODE:-}"
  [[ "$rc" =~ ^[0-9]+$ ]] || { echo "s2l-scan action: the scan step did not finish" >&2; exit 2; }
  if [[ "${S2L_VERDICT:-}" == error && "$rc" -eq 0 && "${S2L_FAIL_ON:-gate}" != never ]]; then
    # exit 0 without a report that says passed: never let the job publish on it
    echo "s2l-scan action: failing the step: exit code 0 without a passing report" >&2
    exit 2
  fi
  case "${S2L_FAIL_ON:-gate}" in
    never) exit 0 ;;
    error) if [[ "$rc" -le 1 || "$rc" -eq 6 ]]; then exit 0; fi ;;
  esac
  if [[ "$rc" -ne 0 ]]; then
    echo "s2l-scan action: failing the step: $(describe "$rc") (fail-on: ${S2L_FAIL_ON:-gate})" >&2
  fi
  exit "$rc"
}

case "${1:-}" in
  install) install ;;
  scan) scan ;;
  enforce) enforce ;;
  *) die "usage: scripts/action.sh install|scan|enforce" ;;
esac
