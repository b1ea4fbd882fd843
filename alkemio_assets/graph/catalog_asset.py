"""The catalog snapshot of each database pair, as an asset that refreshes it."""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.
from pathlib import Path

import dagster as dg

from alkemio_assets.catalog.snapshot import snapshot_path, write_snapshot
from alkemio_assets.catalog.source import read_mysql_catalog, read_table_sizes
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.core.settings import DatabasePair
from alkemio_assets.graph.keys import catalog_key
from checks import plain
from checks.database_checks import schema_contract
from resources import MySQLResource, PostgresResource


def catalog_asset(pair: DatabasePair, directory: Path) -> dg.AssetsDefinition:
    @dg.asset(
        key=catalog_key(pair),
        group_name=pair.group("prepare"),
        kinds={"mysql", "postgres"},
        check_specs=[
            dg.AssetCheckSpec(
                "schema_contract",
                asset=catalog_key(pair),
                blocking=True,
                description="Every source table, column and type pair has its target and cast rule; no NULL "
                "waits for a NOT NULL column.",
            )
        ],
        description=(
            f"Reads the tables, columns, keys and foreign keys of MySQL {pair.source_database} and of the target "
            f"PostgreSQL {pair.target_database} into the snapshot {snapshot_path(pair.name, directory).name}, "
            "from which the graph is built (so that it loads without either server)."
        ),
    )
    def source_catalog(context: dg.AssetExecutionContext, mysql: MySQLResource, postgres: PostgresResource):
        """Refresh the catalog snapshot of one database pair."""
        with mysql.connect() as conn:
            source = read_mysql_catalog(conn, pair.source_database)
            sizes = read_table_sizes(conn, pair.source_database)
        with postgres.connect(pair.target_database) as conn:
            target = read_pg_catalog(conn, pair.target_database)
        described = f"{mysql.describe()}/{pair.source_database} -> {postgres.describe()}/{pair.target_database}"
        path = write_snapshot(pair.name, source, target, described, directory, sizes)
        context.log.info(f"{pair.name}: {len(source.tables)} source tables, {len(target.tables)} target tables")
        yield dg.MaterializeResult(
            metadata={
                "source_tables": len(source.tables),
                "target_tables": len(target.tables),
                "columns": sum(len(t.columns) for t in source.tables),
                "foreign_keys": sum(len(t.foreign_keys) for t in source.tables),
                "source_bytes": sum(sizes.values()),
                "source_server": source.server_version,
                "target_server": target.server_version,
                "snapshot": dg.MetadataValue.path(str(path)),
            }
        )
        if context.selected_asset_check_keys:
            contract = schema_contract(pair, source, target, mysql, postgres, catalog_key(pair))
            if not contract.passed:
                # in the job's own output too, not only in the check's metadata in the UI
                problems = [row["problem"] for row in plain(contract.metadata["problems"])]
                context.log.error(f"{pair.name}: schema contract broken:\n  - " + "\n  - ".join(problems))
            yield contract

    return source_catalog
