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
