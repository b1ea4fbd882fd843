"""Typed, validated settings from the environment (the seed's variable names) and migration.toml."""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alkemio_assets.core.casts import OVERRIDES
from alkemio_assets.core.fetch import BUDGET, Fetch
from alkemio_assets.core.ledgers import LEDGERS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "migration.toml"
# a table above this many MB of source is exported in key ranges, one process each; off by
# default: measured on 2 cores, every core is already busy with MIGRATION_WORKERS tables (README)
CHUNK_MB = 0

ServerKind = Literal["mysql", "postgres"]


class SettingsError(ValueError):
    """Raised with every problem found in the configuration, one per line."""


@dataclass(frozen=True)
class Endpoint:
    """A database server. Holds the *name* of the variable with the password, never the password."""

    kind: ServerKind
    host: str
    port: int
    user: str
    password_env: str

    def password(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        if self.password_env not in env:
            raise SettingsError(
                f"{self.password_env} is not set: the password for {self.describe()} "
                "(set it empty for trust/socket authentication)"
            )
        return env[self.password_env]

    def describe(self) -> str:
        return f"{self.kind}://{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Override:
    """A per-column cast the type pair cannot say (migration.toml), recorded in the manifest."""

    cast: str
    reason: str


@dataclass(frozen=True)
class CrossReference:
    """A column whose values name rows of another database (no foreign key can say so)."""

    column: str  # "table.column" in this database
    database: str  # the other pair's name
    names: str  # "table.column" there


@dataclass(frozen=True)
class SeedTable:
    """What a table name of the seed's checklist is called in this schema, or why it has none."""

    table: str | None
    reason: str = ""


@dataclass(frozen=True)
class VersionPin:
    """The application migrations this configuration fits: the newest entry of the ledger on
    each side (migration.toml `versions`)."""

    ledger: str  # the ledger table, the same name on both sides
    kind: str  # how to read it: alkemio_assets.core.ledgers.LEDGERS
    source: str  # the newest migration MySQL must hold
    target: str  # the newest migration PostgreSQL must hold before the load


# how an application names its database in its env file: the bare name, or a whole DSN
# (alkemio_assets.operations.cutover.APP_FORMS renders each)
APP_SETTING_FORMS = ("name", "dsn")


@dataclass(frozen=True)
class AppSetting:
    """The line of the applications' env file that points one application at this database
    (migration.toml `app_setting`): Alkemio's DATABASE_NAME, Kratos's DSN."""

    variable: str
    form: str  # one of APP_SETTING_FORMS


@dataclass(frozen=True)
class SchemaStep:
    """How a target schema is made or migrated further (migration.toml `schema` / `later`, or
    NAME_SCHEMA_COMMAND / NAME_SCHEMA_FILE, NAME_LATER_COMMAND / NAME_LATER_FILE): the
    application's own migration command, or a SQL file; one of the two."""

    command: tuple[str, ...] = ()  # run without a shell, in `cwd`, the target in its environment
    file: Path | None = None
    cwd: Path | None = None

    def describe(self) -> str:
        return f"`{' '.join(self.command)}`" if self.command else f"{self.file}"


@dataclass(frozen=True)
class ReadQuery:
    """A representative read of the application, timed on both sides after the load (the seed:
    performance equal to or better than MySQL's); `%s` takes the value `sample` picks on MySQL."""

    name: str
    sample: str  # a MySQL query whose first row's first column is the value looked up
    mysql: str
    postgres: str


Phase = Literal["prepare", "export", "stage", "load", "verify"]
PHASES: tuple[Phase, ...] = ("prepare", "export", "stage", "load", "verify")


@dataclass(frozen=True)
class DatabasePair:
    """One MySQL database and the PostgreSQL database it converges on."""

    name: str
    source_database: str
    target_database: str
    exclude: Mapping[str, str] = field(default_factory=dict)
    critical_tables: tuple[str, ...] = ()
    overrides: Mapping[str, Override] = field(default_factory=dict)  # "table.column" -> override
    replace_seeded: tuple[str, ...] = ()  # pre-filled target tables that may be replaced
    references: tuple[CrossReference, ...] = ()
    lookups: tuple[str, ...] = ()  # "table.column" lookups that must be able to use an index
    seed_tables: Mapping[str, SeedTable] = field(default_factory=dict)  # seed's name -> this schema's
    versions: VersionPin | None = None
    app_setting: AppSetting | None = None
    schema: SchemaStep | None = None  # makes the empty target schema (job prepare_schema)
    later: SchemaStep | None = None  # the application's migrations after the baseline, after the load
    queries: tuple[ReadQuery, ...] = ()  # timed on both sides after the load (check query_parity)

    def group(self, phase: Phase) -> str:
        """The UI's group of this database's assets of one phase, in the order of the phases:
        `alkemio_1_prepare` (catalog, schema), `_2_export`, `_3_stage`, `_4_load`, `_5_verify`."""
        return f"{self.name}_{PHASES.index(phase) + 1}_{phase}"

    def seed_names(self) -> dict[str, str]:
        """The seed's table names that this schema calls otherwise, or has no table for, and why."""
        return {
            name: f"table {seed.table}" if seed.table is not None else f"no table: {seed.reason}"
            for name, seed in self.seed_tables.items()
        }


# Column names (case-insensitive substrings) whose values a row preview never shows: e-mails,
# names and phone numbers, password hashes and credentials, tokens, codes and secrets, and the
# Kratos documents that hold them (traits, credential configs, flow contexts, message bodies).
# migration.toml [preview] mask replaces the list.
MASKED_COLUMNS = (
    *("email", "phone", "upn", "firstname", "lastname", "recipient"),  # who a person is
    *("password", "hash", "credential", "identifier", "token", "secret", "code"),  # what lets one in
    *("traits", "config", "payload", "context", "body"),  # Kratos documents that hold both
)


@dataclass(frozen=True)
class Preview:
    """The few rows an asset's page shows of its file, with sensitive columns masked."""

    rows: int = 5  # 0: no preview
    mask: tuple[str, ...] = MASKED_COLUMNS

    def masks(self, column: str) -> bool:
        return any(part in column.lower() for part in self.mask)


@dataclass(frozen=True)
class Settings:
    source: Endpoint
    target: Endpoint
    pairs: tuple[DatabasePair, ...]
    workdir: Path
    catalog_dir: Path
    workers: int  # tables moved at once inside a step
    shards: int  # steps per database (a cluster spreads them over its workers)
    chunk_bytes: int  # a table with more source bytes is exported in key ranges, in processes (0: never)
    dagster_storage: Endpoint
    dagster_storage_database: str
    retries: int = 3  # attempts after a lost connection, where nothing is committed yet
    retry_seconds: int = 2  # the first wait before one; doubled on each attempt
    batch_bytes: int = BUDGET  # a reader's batch of rows takes no more rows past this many bytes
    staging_memory_mb: int = 1_000  # DuckDB's memory limit while staging (it spills to its file)
    app_env_file: Path | None = None  # the applications' env file the cut-over rewrites (None: none)
    monitor_hours: int = 48  # the seed's 24-48 hours of monitoring after the cut-over
    monitor_cron: str = "0 * * * *"  # when the monitoring schedule runs its checks (UTC)
    backup: str = ""  # proof of a MySQL backup (a file or folder), "take", or "none" (a rehearsal on a copy)
    backup_max_hours: int = 24  # a backup older than this is no proof
    quiet_seconds: int = 10  # the source must not change for this long before the export (0: not looked at)
    extra_databases: tuple[str, ...] = ()  # target databases the applications need besides the pairs'
    replace_target: bool = False  # schema preparation may drop a target that holds application data
    preview: Preview = Preview()  # the rows an asset's page shows (migration.toml [preview])
    progress_seconds: int = 10  # a step says its progress this often (0: never)

    @property
    def fetch(self) -> Fetch:
        return Fetch(budget=self.batch_bytes)

    def pair(self, name: str) -> DatabasePair:
        for p in self.pairs:
            if p.name == name:
                return p
        raise SettingsError(f"no database {name!r} in migration.toml; known: {[p.name for p in self.pairs]}")


def _port(env: Mapping[str, str], var: str, default: int, problems: list[str]) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        problems.append(f"{var}={raw!r} is not a TCP port (1-65535)")
        return default
    return int(raw)


def _positive(env: Mapping[str, str], var: str, default: int, what: str, problems: list[str], minimum: int = 1) -> int:
    raw = _text(env, var, str(default))
    if not (raw.isdigit() and int(raw) >= minimum):
        kind = "positive" if minimum == 1 else f"whole (at least {minimum})"
        problems.append(f"{var}={raw!r} is not a {kind} number of {what}")
        return default
    return int(raw)


def _text(env: Mapping[str, str], var: str, default: str) -> str:
    return env.get(var, "").strip() or default


def _schema_step(
    entry: Mapping, env: Mapping[str, str], prefix: str, kind: str, where: str, problems: list[str]
) -> SchemaStep | None:
    """A schema step from migration.toml, the environment's NAME_SCHEMA_* / NAME_LATER_* first."""
    command = env.get(f"{prefix}_{kind.upper()}_COMMAND", "").strip() or entry.get("command", "")
    file = env.get(f"{prefix}_{kind.upper()}_FILE", "").strip() or str(entry.get("file", "")).strip()
    if isinstance(command, str):
        command = shlex.split(command)
    if not command and not file:
        return None
    if command and file:
        problems.append(f"{where}: a command or a file, not both ({prefix}_{kind.upper()}_COMMAND / _FILE)")
    cwd = str(entry.get("cwd", "")).strip()
    return SchemaStep(tuple(command), REPO_ROOT / file if file else None, REPO_ROOT / cwd if cwd else None)


def _pairs(config: Mapping, env: Mapping[str, str], problems: list[str]) -> tuple[DatabasePair, ...]:
    databases = config.get("databases", {})
    if not databases:
        problems.append("migration.toml lists no [databases.NAME] table")
    pairs = []
    for name, entry in databases.items():
        prefix = name.upper()
        source = _text(env, f"{prefix}_MYSQL_DATABASE", entry.get("source_database", name))
        target = _text(env, f"{prefix}_DATABASE_NAME", entry.get("target_database", name))
        if name == "alkemio":
            source = _text(env, "MYSQL_DATABASE", source)
            target = _text(env, "DATABASE_NAME", target)
        exclude = entry.get("exclude", {})
        for table, reason in exclude.items():
            if not str(reason).strip():
                problems.append(f"migration.toml: databases.{name}.exclude.{table} needs a reason")
        overrides = {}
        for column, spec in entry.get("overrides", {}).items():
            cast, reason = str(spec.get("cast", "")), str(spec.get("reason", "")).strip()
            if cast not in OVERRIDES:
                problems.append(
                    f"migration.toml: databases.{name}.overrides.{column}: cast {cast!r} is not one of {sorted(OVERRIDES)}"
                )
            if not reason or "." not in column:
                problems.append(
                    f"migration.toml: databases.{name}.overrides.{column} needs a 'table.column' key and a reason"
                )
            overrides[column] = Override(cast, reason)
        seed_tables = {}
        for seed_name, spec in entry.get("seed_tables", {}).items():
            table, reason = spec.get("table"), str(spec.get("reason", "")).strip()
            if (table is None) == (not reason):
                problems.append(
                    f"migration.toml: databases.{name}.seed_tables.{seed_name} needs either table = '...' "
                    "(its name in this schema) or reason = '...' (why it has no table)"
                )
            seed_tables[seed_name] = SeedTable(table, reason)
        versions = None
        if "versions" in entry:
            pin = entry["versions"]
            fields = {k: str(pin.get(k, "")).strip() for k in ("ledger", "kind", "source", "target")}
            if not all(fields.values()) or fields["kind"] not in LEDGERS:
                problems.append(
                    f"migration.toml: databases.{name}.versions needs ledger, kind (one of {sorted(LEDGERS)}), "
                    "source and target"
                )
            versions = VersionPin(**fields)
        app_setting = None
        if "app_setting" in entry:
            spec = entry["app_setting"]
            variable, form = str(spec.get("variable", "")).strip(), str(spec.get("form", "")).strip()
            if not variable.isidentifier() or form not in APP_SETTING_FORMS:
                problems.append(
                    f"migration.toml: databases.{name}.app_setting needs variable = 'NAME' (of the env file) "
                    f"and form = one of {list(APP_SETTING_FORMS)}"
                )
            app_setting = AppSetting(variable, form)
        steps = {
            kind: _schema_step(entry.get(kind, {}), env, prefix, kind, f"databases.{name}.{kind}", problems)
            for kind in ("schema", "later")
        }
        queries = []
        for spec in entry.get("queries", ()):
            fields = {k: str(spec.get(k, "")).strip() for k in ("name", "sample", "mysql", "postgres")}
            if not all(fields.values()):
                problems.append(
                    f"migration.toml: databases.{name}.queries: {fields['name'] or '?'} needs name, "
                    "sample (a MySQL query picking the value), mysql and postgres (each with one %s)"
                )
            queries.append(ReadQuery(**fields))
        pairs.append(
            DatabasePair(
                name=name,
                source_database=source,
                target_database=target,
                exclude=dict(exclude),
                critical_tables=tuple(entry.get("critical_tables", ())),
                overrides=overrides,
                replace_seeded=tuple(entry.get("replace_seeded", ())),
                references=tuple(
                    CrossReference(r.get("column", ""), r.get("database", ""), r.get("names", ""))
                    for r in entry.get("references", ())
                ),
                lookups=tuple(entry.get("lookups", ())),
                seed_tables=seed_tables,
                versions=versions,
                app_setting=app_setting,
                schema=steps["schema"],
                later=steps["later"],
                queries=tuple(queries),
            )
        )
    return tuple(pairs)


def _preview(entry: Mapping, env: Mapping[str, str], problems: list[str]) -> Preview:
    """migration.toml [preview]: rows (MIGRATION_PREVIEW_ROWS first) and the masked column names."""
    rows = _positive(env, "MIGRATION_PREVIEW_ROWS", int(entry.get("rows", Preview.rows)), "preview rows", problems, 0)
    mask = entry.get("mask", MASKED_COLUMNS)
    if not isinstance(mask, list | tuple) or not all(isinstance(m, str) and m.strip() for m in mask):
        problems.append('migration.toml: preview.mask is a list of column-name parts, e.g. ["email", "token"]')
        mask = MASKED_COLUMNS
    return Preview(rows, tuple(m.strip().lower() for m in mask))


def load_settings(environ: Mapping[str, str] | None = None, config_path: Path | None = None) -> Settings:
    """Read settings; raise SettingsError naming every missing or malformed value. The
    configuration file is `config_path`, else MIGRATION_CONFIG, else migration.toml."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    if config_path is None:
        config_path = REPO_ROOT / _text(env, "MIGRATION_CONFIG", str(DEFAULT_CONFIG.relative_to(REPO_ROOT)))

    kind = _text(env, "DATABASE_TYPE", "postgres").lower()
    if kind == "mysql":
        problems.append(
            "DATABASE_TYPE=mysql describes the legacy source; for a migration DATABASE_* describe the "
            "PostgreSQL target (DATABASE_TYPE=postgres) and MYSQL_* the source"
        )
    elif kind not in ("postgres", "postgresql"):
        problems.append(f"DATABASE_TYPE={kind!r}: expected 'postgres'")

    target = Endpoint(
        kind="postgres",
        host=_text(env, "DATABASE_HOST", "127.0.0.1"),
        port=_port(env, "DATABASE_PORT", 5432, problems),
        user=_text(env, "DATABASE_USERNAME", "postgres"),
        password_env="DATABASE_PASSWORD",
    )
    source_password_env = "MYSQL_PASSWORD" if "MYSQL_PASSWORD" in env else "MYSQL_ROOT_PASSWORD"
    source = Endpoint(
        kind="mysql",
        host=_text(env, "MYSQL_HOST", "127.0.0.1"),
        port=_port(env, "MYSQL_PORT", 3306, problems),
        user=_text(env, "MYSQL_USER", "root"),
        password_env=source_password_env,
    )
    storage = Endpoint(
        kind="postgres",
        host=_text(env, "DAGSTER_PG_HOST", target.host),
        port=_port(env, "DAGSTER_PG_PORT", target.port, problems),
        user=_text(env, "DAGSTER_PG_USERNAME", target.user),
        password_env="DAGSTER_PG_PASSWORD",
    )
    for endpoint in (source, target):
        if endpoint.password_env not in env:
            problems.append(
                f"{endpoint.password_env} is not set: the password for {endpoint.describe()} "
                "(set it empty for trust/socket authentication)"
            )

    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{config_path} not found")
        config = {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{config_path}: {exc}")
        config = {}
    pairs = _pairs(config, env, problems)
    names = {p.name for p in pairs}
    for pair in pairs:
        for ref in pair.references:
            if ref.database not in names or "." not in ref.column or "." not in ref.names:
                problems.append(
                    f"migration.toml: databases.{pair.name}.references: {ref} needs column = 'table.column', "
                    f"database = one of {sorted(names)}, names = 'table.column'"
                )

    # Relative paths are relative to the repository root, wherever a process was started.
    workdir = REPO_ROOT / _text(env, "MIGRATION_WORKDIR", "var")
    workers = _positive(env, "MIGRATION_WORKERS", 4, "parallel tables in a step", problems)
    shards = _positive(env, "MIGRATION_SHARDS", 1, "steps to split each database's tables into", problems)
    chunk_mb = _positive(env, "MIGRATION_CHUNK_MB", CHUNK_MB, "MB of source per key range (0: off)", problems, 0)
    retries = _positive(env, "MIGRATION_RETRIES", 3, "attempts after a lost connection", problems, 0)
    retry_seconds = _positive(env, "MIGRATION_RETRY_SECONDS", 2, "seconds before the first retry", problems, 0)
    batch_mb = _positive(env, "MIGRATION_BATCH_MB", BUDGET // 1_000_000, "MB of values a batch of rows holds", problems)
    staging_mb = _positive(env, "MIGRATION_STAGING_MB", 1_000, "MB DuckDB may use while staging", problems, 100)
    app_env = env.get("MIGRATION_APP_ENV_FILE", "").strip()
    monitor_hours = _positive(env, "MIGRATION_MONITOR_HOURS", 48, "hours to monitor after the cut-over", problems)
    monitor_cron = _text(env, "MIGRATION_MONITOR_CRON", "0 * * * *")
    backup = env.get("MIGRATION_BACKUP", "").strip()
    backup_hours = _positive(env, "MIGRATION_BACKUP_MAX_HOURS", 24, "hours a backup stays proof", problems)
    quiet = _positive(env, "MIGRATION_QUIET_SECONDS", 10, "seconds the source must be quiet (0: off)", problems, 0)
    replace_target = _text(env, "MIGRATION_REPLACE_TARGET", "no").lower() in ("yes", "true", "1")
    extra = config.get("target", {}).get("databases", [])
    if "MIGRATION_EXTRA_DATABASES" in env:
        extra = [name.strip() for name in env["MIGRATION_EXTRA_DATABASES"].split(",") if name.strip()]
    preview = _preview(config.get("preview", {}), env, problems)
    progress = _positive(env, "MIGRATION_PROGRESS_SECONDS", 10, "seconds between progress lines (0: none)", problems, 0)
    if len(monitor_cron.split()) != 5:
        problems.append(f"MIGRATION_MONITOR_CRON={monitor_cron!r} is not a cron schedule of five fields")
    if problems:
        raise SettingsError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return Settings(
        source=source,
        target=target,
        pairs=pairs,
        workdir=workdir,
        workers=workers,
        shards=shards,
        chunk_bytes=chunk_mb * 1_000_000,
        catalog_dir=REPO_ROOT / _text(env, "MIGRATION_CATALOG_DIR", str(workdir / "catalog")),
        dagster_storage=storage,
        dagster_storage_database=_text(env, "DAGSTER_PG_DB", "dagster"),
        retries=retries,
        retry_seconds=retry_seconds,
        batch_bytes=batch_mb * 1_000_000,
        staging_memory_mb=staging_mb,
        app_env_file=REPO_ROOT / app_env if app_env else None,
        monitor_hours=monitor_hours,
        monitor_cron=monitor_cron,
        backup=backup,
        backup_max_hours=backup_hours,
        quiet_seconds=quiet,
        extra_databases=tuple(extra),
        replace_target=replace_target,
        preview=preview,
        progress_seconds=progress,
    )
