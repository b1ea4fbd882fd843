"""The live schemas against the catalog snapshot the asset graph was built from, and the plan of
a run made from the live ones."""

from __future__ import annotations

from alkemio_assets.catalog.contract import TablePlan, plan_database
from alkemio_assets.catalog.snapshot import Snapshot
from alkemio_assets.catalog.source import Catalog, read_mysql_catalog
from alkemio_assets.catalog.target import TargetCatalog, read_pg_catalog
from alkemio_assets.core.settings import DatabasePair
from resources import MySQLResource, PostgresResource


class StaleSnapshotError(RuntimeError):
    """The live schema is not the one the asset graph was built from."""


def live_catalogs(
    pair: DatabasePair, mysql: MySQLResource, postgres: PostgresResource
) -> tuple[Catalog, TargetCatalog]:
    """Both schemas of a database pair as they are now."""
    with mysql.connect() as conn:
        source = read_mysql_catalog(conn, pair.source_database)
    with postgres.connect(pair.target_database) as conn:
        return source, read_pg_catalog(conn, pair.target_database)


def check_live_schema(
    pair: DatabasePair,
    snapshot: Snapshot,
    mysql: MySQLResource,
    postgres: PostgresResource,
    tables: set[str],
    moving: set[str],
) -> tuple[dict[str, TablePlan], TargetCatalog]:
    """Re-read both schemas and plan `tables`, with the live target catalog. The tables this run moves must still be as in the
    snapshot the graph was built from; tables only checked may differ (that is what checks see)."""
    source, target = live_catalogs(pair, mysql, postgres)
    changed = sorted(
        name
        for name in moving
        if next((t for t in source.tables if t.name == name), None) != snapshot.source.table(name)
        or target.table(name) != snapshot.target.table(name)
    )
    if changed:
        raise StaleSnapshotError(
            f"{pair.name}: the schema of {changed} changed since the catalog snapshot of "
            f"{snapshot.taken_at:%Y-%m-%d %H:%M} UTC; run the job refresh_catalog, review, then migrate"
        )
    return plan_database(pair, source, target, only=tables), target
