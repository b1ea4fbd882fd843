"""The schema contract: each source table paired with its target table, each column with its
target column and cast rule. Built before any data moves; any gap stops the run here, named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from alkemio_assets.catalog.source import Catalog, ColumnSpec, TableSpec
from alkemio_assets.catalog.target import TargetCatalog, TargetColumn, TargetTable, integer_text
from alkemio_assets.core.casts import (
    DECIMAL,
    DECIMAL_TEXT,
    DUCKDB_MAX_DECIMAL,
    OVERRIDES,
    PG_INTEGER_RANGE,
    TEXT,
    TEXT_UNBOUNDED,
    CastRule,
    NoCastRule,
    read_as,
    rule_for,
    source_family,
)
from alkemio_assets.core.settings import DatabasePair, Override
from alkemio_assets.core.sql import mysql_ident

ExportAs = Literal["value", "bytes", "charset_text"]
UTF8_CHARSETS = frozenset({None, "utf8mb4", "utf8mb3", "utf8", "binary"})


class ContractError(ValueError):
    """The source and target schemas do not meet: every gap, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("schema contract broken:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class ColumnPlan:
    source: ColumnSpec
    target: TargetColumn
    rule: CastRule
    params: Mapping[str, str | int] = field(default_factory=dict)
    override: Override | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def export_as(self) -> ExportAs:
        if self.override is not None or self.source.data_type in (
            "tinyblob",
            "blob",
            "mediumblob",
            "longblob",
            "binary",
            "varbinary",
        ):
            return "bytes"
        if self.source.charset not in UTF8_CHARSETS:
            return "charset_text"
        return "value"

    @property
    def read_as(self) -> str:
        if self.override is not None:
            return "VARCHAR"
        s = self.source
        return read_as(s.data_type, s.is_json, s.numeric_precision, s.numeric_scale)

    def transform(self, expr: str) -> str:
        return self.rule.transform.format(v=expr, **self.params)

    def invalid(self, expr: str) -> str | None:
        return None if self.rule.invalid is None else self.rule.invalid.format(v=expr, **self.params)

    def reason(self) -> str:
        return self.rule.reason.format(**self.params)

    def explain(self, expr: str) -> str:
        """A DuckDB expression: why this column's rule refuses the value `expr`."""
        if self.rule.explain is None:
            return "'" + self.reason().replace("'", "''") + "'"
        return self.rule.explain.format(v=expr, **self.params)

    def describe(self) -> str:
        via = f" (override {self.override.cast})" if self.override else ""
        return f"{self.source.column_type} -> {self.target.type_name}: {self.rule.name}{via}"


@dataclass(frozen=True)
class TablePlan:
    database: str  # logical name: alkemio, kratos
    source: TableSpec
    target: TargetTable
    columns: tuple[ColumnPlan, ...]
    skipped: tuple[str, ...]  # generated source columns, not exported

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def key_columns(self) -> tuple[ColumnPlan, ...]:
        """The columns that name a row on MySQL: its primary key, else its first unique key with
        no NULL column, else none (the file line is all there is)."""
        candidates = [self.source.primary_key, *self.source.unique_keys]
        by_name = {c.name: c for c in self.columns}
        for key in candidates:
            columns = tuple(by_name[n] for n in key if n in by_name)
            if key and len(columns) == len(key) and not any(c.source.nullable for c in columns):
                return columns
        return ()

    def row_key(self, text: Mapping[str, str | None]) -> dict[str, Any]:
        """The key of a row read back as text (from a staged file), with integers as integers:
        `id=2`, not `id='2'`."""
        return {c.name: integer_text(c.target, text[c.target.name]) for c in self.key_columns}

    @property
    def code_version(self) -> str:
        """Changes when the table's columns, target or casts change, marking its assets stale."""
        body = json.dumps(
            [asdict(self.source), asdict(self.target), [c.describe() for c in self.columns]], sort_keys=True
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _params(source: ColumnSpec, target: TargetColumn) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    if target.data_type in PG_INTEGER_RANGE:
        params["lo"], params["hi"] = PG_INTEGER_RANGE[target.data_type]
    if target.char_max_length is not None:
        params["n"] = target.char_max_length
    if target.data_type == "numeric":
        params["p"] = target.numeric_precision or 1000
        params["s"] = target.numeric_scale or 0
        params["p_int"] = max(int(params["p"]) - int(params["s"]), 1)
    return params


def _specialise(rule: CastRule, source: ColumnSpec, target: TargetColumn) -> CastRule:
    """Guard clauses for what the pair alone cannot decide."""
    # unbounded text / character varying: no length to check
    if rule is TEXT and target.char_max_length is None:
        return TEXT_UNBOUNDED
    # decimal wider than DuckDB's DECIMAL: checked as text
    if rule is DECIMAL and (source.numeric_precision or 0) > DUCKDB_MAX_DECIMAL:
        return DECIMAL_TEXT
    return rule


def plan_column(
    table: str, source: ColumnSpec, target: TargetColumn, override: Override | None, problems: list[str]
) -> ColumnPlan | None:
    where = f"{table}.{source.name}"
    if override is not None:
        return ColumnPlan(source, target, OVERRIDES[override.cast], _params(source, target), override)
    family = source_family(source.data_type, source.is_json)
    try:
        rule = _specialise(rule_for(family, target.data_type), source, target)
    except NoCastRule:
        problems.append(
            f"{where}: no cast rule from MySQL {source.column_type} to PostgreSQL {target.type_name}; "
            "add a rule to alkemio_assets/core/casts.py or an override in migration.toml"
        )
        return None
    if family == "enum" and target.data_type == "enum":
        missing = [label for label in source.enum_labels if label not in target.enum_labels]
        if missing:
            problems.append(f"{where}: enum labels {missing} do not exist in PostgreSQL type {target.type_name}")
    if family in ("enum", "set") and target.char_max_length is not None:
        longest = max((len(label) for label in source.enum_labels), default=0)
        if family == "set":
            longest = sum(len(label) + 1 for label in source.enum_labels) - 1
        if longest > target.char_max_length:
            problems.append(
                f"{where}: a {source.column_type} value can be {longest} characters, {target.type_name} holds {target.char_max_length}"
            )
    return ColumnPlan(source, target, rule, _params(source, target))


def plan_table(
    database: str, source: TableSpec, target: TargetTable | None, overrides: Mapping[str, Override], problems: list[str]
) -> TablePlan | None:
    if target is None:
        problems.append(f"{database}.{source.name}: no table {source.name!r} in the target schema")
        return None
    columns: list[ColumnPlan] = []
    skipped = tuple(c.name for c in source.columns if c.generated)
    for column in source.columns:
        if column.generated:
            continue
        target_column = target.column(column.name)
        if target_column is None:
            problems.append(f"{database}.{source.name}.{column.name}: no target column for MySQL {column.column_type}")
            continue
        planned = plan_column(
            f"{database}.{source.name}", column, target_column, overrides.get(f"{source.name}.{column.name}"), problems
        )
        if planned is not None:
            columns.append(planned)
    exported = {c.name for c in columns}
    for target_column in target.columns:
        if target_column.name not in exported and target_column.not_null and not target_column.has_default:
            problems.append(
                f"{database}.{source.name}.{target_column.name}: NOT NULL in the target, no default, and no source column"
            )
    return TablePlan(database, source, target, tuple(columns), skipped)


def configured_names(pair: DatabasePair, source: Catalog, target: TargetCatalog) -> list[str]:
    """Every table and column migration.toml names for this pair, checked against the schemas,
    so that a misspelt or outdated name stops the run here instead of inside a check."""
    source_columns = {(t.name, c.name) for t in source.tables for c in t.columns}
    target_columns = {(t.name, c.name) for t in target.tables for c in t.columns}
    source_tables = {t.name for t in source.tables}
    target_tables = {t.name for t in target.tables}
    where = f"migration.toml databases.{pair.name}"
    problems = []

    def column(setting: str, qualified: str, columns: set[tuple[str, str]], side: str) -> None:
        table, _, name = qualified.partition(".")
        if (table, name) not in columns:
            problems.append(f"{where}.{setting}: {qualified!r} is not a {side} column")

    def table(setting: str, name: str, tables: set[str], side: str) -> None:
        if name not in tables:
            problems.append(f"{where}.{setting}: {name!r} is not a {side} table")

    for qualified in pair.overrides:
        column("overrides", qualified, source_columns, "source")
    for name in pair.critical_tables:
        table("critical_tables", name, target_tables, "target")
    for name in pair.replace_seeded:
        table("replace_seeded", name, target_tables, "target")
    for name in pair.exclude:
        table("exclude", name, source_tables, "source")
    for qualified in pair.lookups:
        column("lookups", qualified, target_columns, "target")
    for ref in pair.references:
        column("references", ref.column, source_columns, "source")
        column("references", ref.column, target_columns, "target")
    for seed_name, seed in pair.seed_tables.items():
        if seed.table is not None:
            table(f"seed_tables.{seed_name}", seed.table, target_tables, "target")
    return problems


def plan_tables(
    pair: DatabasePair, source: Catalog, target: TargetCatalog, only: set[str] | None = None
) -> tuple[dict[str, TablePlan], list[str]]:
    """Plan every table of the source that is not excluded (or those in `only`): the plans that
    hold, and every gap found."""
    problems: list[str] = []
    plans: dict[str, TablePlan] = {}
    problems += configured_names(pair, source, target)
    for table in source.tables:
        if table.name in pair.exclude or (only is not None and table.name not in only):
            continue
        found: list[str] = []
        plan = plan_table(pair.name, table, target.table(table.name), pair.overrides, found)
        problems += found
        if plan is not None and not found:
            plans[table.name] = plan
    return plans, problems


def plan_database(
    pair: DatabasePair, source: Catalog, target: TargetCatalog, only: set[str] | None = None
) -> dict[str, TablePlan]:
    """plan_tables, raising ContractError with every gap when there is one."""
    plans, problems = plan_tables(pair, source, target, only)
    if problems:
        raise ContractError(problems)
    return plans


def stored_column(column: ColumnPlan) -> str:
    name = mysql_ident(column.name)
    # bytes and non-UTF-8 text are read as stored, never transcoded by the connection
    return f"CAST({name} AS BINARY)" if column.export_as in ("bytes", "charset_text") else name


def select_list(columns: tuple[ColumnPlan, ...]) -> str:
    """The columns as MySQL stores them: bytes and non-UTF-8 text as bytes."""
    return ", ".join(stored_column(c) for c in columns)
