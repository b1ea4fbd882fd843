"""The source catalog snapshot of each database, as an asset that refreshes it."""

# No `from __future__ import annotations`: Dagster reads the context and resource annotations.

from pathlib import Path

import dagster as dg

from alkemio_assets.catalog import read_mysql_catalog
from alkemio_assets.settings import DatabasePair
from alkemio_assets.snapshot import snapshot_path, write_snapshot
from resources import MySQLResource


def catalog_asset(pair: DatabasePair, directory: Path) -> dg.AssetsDefinition:
    @dg.asset(
        key=[pair.name, "source_catalog"],
        group_name=pair.name,
        kinds={"mysql"},
        description=(
            f"Tables, columns, keys and foreign keys of MySQL database `{pair.source_database}`, read from "
            f"information_schema and kept in the snapshot {snapshot_path(pair.name, directory).name} "
            "so the graph loads offline."
        ),
    )
    def source_catalog(context: dg.AssetExecutionContext, mysql: MySQLResource) -> dg.MaterializeResult:
        """Refresh the catalog snapshot of one source database."""
        with mysql.connect() as conn:
            catalog = read_mysql_catalog(conn, pair.source_database)
        path = write_snapshot(pair.name, catalog, f"{mysql.describe()}/{pair.source_database}", directory)
        context.log.info(f"{pair.name}: {len(catalog.tables)} tables from {catalog.server_version}")
        return dg.MaterializeResult(
            metadata={
                "tables": len(catalog.tables),
                "columns": sum(len(t.columns) for t in catalog.tables),
                "foreign_keys": sum(len(t.foreign_keys) for t in catalog.tables),
                "server_version": catalog.server_version,
                "snapshot": dg.MetadataValue.path(str(path)),
            }
        )

    return source_catalog


def build_catalog_definitions(pairs: tuple[DatabasePair, ...], directory: Path) -> dg.Definitions:
    assets = [catalog_asset(p, directory) for p in pairs]
    job = dg.define_asset_job(
        "refresh_catalog",
        selection=dg.AssetSelection.assets(*assets),
        description="Re-read every source database's information_schema into the catalog snapshots.",
    )
    return dg.Definitions(assets=assets, jobs=[job])
