"""Memory with long values: the peak of one migration (every check included) of a table that
holds K values of 16 MB, for K = 1, 4 and 16, in one process (Dagster's in-process executor,
so the sampled tree is the step's), with the default MIGRATION_BATCH_MB and MIGRATION_STAGING_MB.

    .venv/bin/python -m bench.long_values        # writes bench/results/long-values.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import dagster as dg

from alkemio_assets.core.settings import load_settings
from alkemio_assets.definitions import build_definitions
from bench.run import RESULTS, TreeMemory, _tree_memory_mb, servers

VALUE = 16_000_000
COUNTS = (1, 4, 16)
CONFIG = '[databases.long]\nsource_database = "long"\ntarget_database = "long"\n'


def migrate_long_values(count: int) -> dict[str, object]:
    settings = load_settings()
    mysql, postgres = servers(settings)
    database = f"bench_long_{uuid.uuid4().hex[:8]}"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        mysql.execute_script(
            database,
            [
                "CREATE TABLE doc (id int PRIMARY KEY, body longtext NOT NULL, note varchar(20))",
                "INSERT INTO doc SELECT seq, 'short', 'n' FROM seq_1_to_50",
                f"UPDATE doc SET body = REPEAT('ab\"c,\\n', {VALUE // 6}) WHERE id <= {count}",
            ],
        )
        postgres.execute_script(
            database, "CREATE TABLE doc (id integer PRIMARY KEY, body text NOT NULL, note varchar(20));"
        )
        with tempfile.TemporaryDirectory() as work:
            config = Path(work) / "migration.toml"
            config.write_text(CONFIG)
            env = {**os.environ, "LONG_MYSQL_DATABASE": database, "LONG_DATABASE_NAME": database}
            env["MIGRATION_WORKDIR"] = str(Path(work) / "var")
            defs = build_definitions(load_settings(env, config_path=config))
            with dg.DagsterInstance.ephemeral() as instance:
                assert defs.resolve_job_def("refresh_catalog").execute_in_process(instance=instance).success
                defs = build_definitions(load_settings(env, config_path=config))
                before = _tree_memory_mb(os.getpid())
                sampler = TreeMemory(os.getpid(), every=0.05)
                result = defs.resolve_job_def("migrate_long").execute_in_process(
                    instance=instance, raise_on_error=False
                )
                peak = sampler.stop()
        return {
            "values_of_16_mb": count,
            "succeeded": result.success,
            "memory_before_mb": round(before),
            "peak_memory_mb": round(peak),
        }
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)


def main() -> int:
    results = [migrate_long_values(count) for count in COUNTS]
    for r in results:
        print(
            f"{r['values_of_16_mb']:>3} values of 16 MB: {r['memory_before_mb']:,} MB before, "
            f"peak {r['peak_memory_mb']:,} MB PSS, succeeded {r['succeeded']}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "long-values.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["succeeded"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
