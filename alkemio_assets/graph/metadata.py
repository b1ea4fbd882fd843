"""What the UI shows of a table's assets, in Dagster's standard metadata so that its own views
work: the column schema (the asset's Columns tab, with the rule that cast each column), the
table's name, the row count (plotted across materializations), and for each file its size,
SHA-256, time, rate and a preview of its first rows with sensitive columns masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from alkemio_assets.catalog.contract import ColumnPlan, TablePlan
from alkemio_assets.core.settings import DatabasePair, Preview
from alkemio_assets.graph.keys import Stage
from alkemio_assets.stages.staging import staged_reader
from checks import evidence

MASKED = "masked"
PREVIEW_CHARS = 60  # a preview shows this much of a value
# Dagster's own keys (dagster TableMetadataSet; `dagster/table_name` was `dagster/relation_identifier`)
COLUMN_SCHEMA, ROW_COUNT, TABLE_NAME = "dagster/column_schema", "dagster/row_count", "dagster/table_name"


def _column(column: ColumnPlan, stage: Stage) -> dg.TableColumn:
    """A column as a stage holds it: MySQL's type in the export, PostgreSQL's after the cast."""
    source, target = column.source, column.target
    if stage == "csv":
        return dg.TableColumn(
            column.name,
            source.column_type,
            description=f"MySQL {source.column_type}, written as text for the rule {column.rule.name}",
            constraints=dg.TableColumnConstraints(nullable=source.nullable),
        )
    via = f", override {column.override.cast}: {column.override.reason}" if column.override else ""
    return dg.TableColumn(
        target.name,
        target.type_name,
        description=f"from MySQL {source.column_type} by the rule {column.rule.name}: {column.reason()}{via}",
        constraints=dg.TableColumnConstraints(nullable=not target.not_null),
        tags={"cast": column.rule.name},
    )


def column_schema(plan: TablePlan, stage: Stage) -> dg.TableSchema:
    key = plan.source.primary_key if stage == "csv" else plan.target.primary_key
    constraints = dg.TableConstraints(other=[f"primary key ({', '.join(key)})"]) if key else None
    return dg.TableSchema(columns=[_column(c, stage) for c in plan.columns], constraints=constraints)


def table_name(pair: DatabasePair, table: str, stage: Stage) -> str:
    """The relation a stage's asset is: the MySQL table it reads, the DuckDB table it stages into,
    the PostgreSQL table it loads."""
    return {
        "csv": f"mysql.{pair.source_database}.{table}",
        "staged": f"duckdb.staging.{table}",
        "postgres": f"{pair.target_database}.public.{table}",
    }[stage]


def definition_metadata(pair: DatabasePair, table: str, plan: TablePlan | None, stage: Stage) -> dict[str, Any]:
    """What an asset's page shows before any run: its relation and, once planned, its columns."""
    metadata: dict[str, Any] = {TABLE_NAME: table_name(pair, table, stage)}
    if plan is not None:
        metadata[COLUMN_SCHEMA] = column_schema(plan, stage)
    return metadata


def file_metadata(path: Path, rows: int, size: int, sha256: str, seconds: float) -> dict[str, Any]:
    """A written file: rows (Dagster's row count), bytes, SHA-256, where it is, how fast."""
    return {
        ROW_COUNT: rows,
        "bytes": size,
        "sha256": sha256,
        "path": dg.MetadataValue.path(str(path)),
        "seconds": round(seconds, 3),
        "rows_per_second": rate(rows, seconds),
    }


def rate(rows: int, seconds: float) -> int:
    return round(rows / seconds) if seconds > 0 else rows


def _shown(value: Any, masked: bool) -> str | None:
    if value is None:
        return None
    if masked:
        return MASKED
    text = str(value)
    return text if len(text) <= PREVIEW_CHARS else f"{text[: PREVIEW_CHARS - 1]}… ({len(text)} characters)"


def preview(cursor: Any, path: Path, settings: Preview) -> dg.MetadataValue | None:
    """The first rows of one of our CSV files as the UI's table, read by DuckDB as text (NULL
    apart from the empty string), long values cut, the columns `settings` masks shown as "masked"."""
    if settings.rows == 0:
        return None
    rows = cursor.execute(f"SELECT * FROM {staged_reader(path)} LIMIT ?", [settings.rows]).fetchall()
    names = [d[0] for d in cursor.description]
    masked = [settings.masks(name) for name in names]
    shown = ({n: _shown(v, m) for n, v, m in zip(names, row, masked, strict=True)} for row in rows)
    return evidence(shown, **{n: MASKED if m else "text" for n, m in zip(names, masked, strict=True)})
