# Sourced by the other scripts: repository root, .env, DAGSTER_HOME.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f .env ] || cp .env.example .env
set -a
# shellcheck disable=SC1091
. ./.env
set +a
export DAGSTER_HOME="$ROOT"
mkdir -p "${MIGRATION_WORKDIR:-var}" "${DAGSTER_ARTIFACTS_DIR:-var/dagster}"
PY="$ROOT/.venv/bin/python"
export VIRTUAL_ENV="$ROOT/.venv"  # the environment dg (Dagster's CLI) expects active for this project

# A headless run: Dagster's `dg launch` with these arguments, then, when the run wrote a report,
# its closing lines as pgloader ends a run (the per-table summary, the verdict and the time
# against the window, the WARN checks that failed, where the report is). dg's exit status.
launch() {
  local since report="" status=0 runs="${MIGRATION_WORKDIR:-var}/runs"
  since="$(mktemp)"
  .venv/bin/dg launch "$@" || status=$?
  if [ -d "$runs" ]; then
    report="$(find "$runs" -mindepth 2 -maxdepth 2 -name report.json -newer "$since" -printf '%T@ %h\n' |
      sort -n | tail -1 | cut -d' ' -f2-)"
  fi
  rm -f "$since"
  if [ -n "$report" ]; then echo; "$PY" -m alkemio_assets.operations.report "$report"; fi
  return "$status"
}
