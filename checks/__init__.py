"""The migration verification checklist as Dagster asset checks, one function per item."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg


def check_result(
    asset_key: dg.AssetKey, name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata: Any
) -> dg.AssetCheckResult:
    """One check's outcome with its evidence as metadata, for the UI."""
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=name, passed=passed, severity=severity, metadata=metadata
    )


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return json.dumps(value, sort_keys=True, default=str)


def evidence(rows: Iterable[Mapping[str, Any]], /, **columns: str) -> dg.TableMetadataValue:
    """A check's evidence as the UI's table: one record per row, the columns named with their
    types (`key="text", orphans="integer"`); a list in a cell is joined with "; "."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    records = [dg.TableRecord({name: _cell(row.get(name)) for name in columns}) for row in rows]
    return dg.MetadataValue.table(records, schema)


def plain(value: dg.MetadataValue) -> Any:
    """A metadata value as JSON holds it: a table as its records (a list of dicts)."""
    if isinstance(value, dg.TableMetadataValue):
        return [dict(record.data) for record in value.records]
    return value.value


def suggested_sql(statements: list[str]) -> dict[str, dg.MetadataValue]:
    """The SQL a check proposes as its remedy: shown in the UI, and kept as a list that the
    report writes to a file of the run (`remedy`)."""
    return {
        "suggested": dg.MetadataValue.md("\n".join(f"    {s}" for s in statements) or "none"),
        "remedy": dg.MetadataValue.json(statements),
    }


def recorded(result: dg.AssetCheckResult) -> dict[str, Any]:
    """A check's outcome as the manifest and the report keep it: passed and severity, with the
    evidence the report shows (a side-by-side table) and the SQL it proposes, when it has them."""
    entry: dict[str, Any] = {"passed": result.passed, "severity": result.severity.value}
    for name in ("side_by_side", "remedy"):
        if (value := result.metadata.get(name)) is not None and (kept := plain(value)):
            entry[name] = kept
    return entry


def run_check(
    fn: Callable[[Any], dg.AssetCheckResult],
    ctx: Any,
    asset_key: dg.AssetKey,
    name: str,
    severity: dg.AssetCheckSeverity,
) -> dg.AssetCheckResult:
    """One check, whatever it meets: a check that raises has failed, with the exception as its
    evidence, and the checks after it still run."""
    try:
        return fn(ctx)
    except Exception as exc:  # a check's own fault must not hide the others' verdicts
        return check_result(
            asset_key, name, False, severity, error=dg.MetadataValue.text(f"{type(exc).__name__}: {exc}")
        )
