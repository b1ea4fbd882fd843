"""Benchmark: our migration against pgloader and against this machine's physical limit, on the
same generated data, the same servers, in one run.

    .venv/bin/python -m bench.run --scale 0.1        # or scripts/bench 0.1

For each contender, a fresh copy of the baseline target schema; wall seconds, rows/s, MB/s
(of CSV data moved) and peak memory (the whole process tree, sampled from /proc every 0.1 s:
the sum of PSS over every process alive at that moment, Dagster's step processes included);
printed as a table and written to bench/results/scale-S.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from alkemio_assets.catalog.contract import plan_tables
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.core.settings import DEFAULT_CONFIG, REPO_ROOT, DatabasePair, load_settings
from alkemio_assets.core.sql import first, mysql_ident, pg_ident
from fixtures import FIXTURE_DATABASES, HANDWRITTEN, HANDWRITTEN_CONFIG, REAL, apply_source_schema, apply_target_schema
from fixtures.generator import generate
from resources import MySQLResource, PostgresResource

RESULTS = REPO_ROOT / "bench" / "results"
TIMEOUT = 1200.0  # seconds for any one command (--timeout)
BENCH_DAGSTER_DB = "bench_dagster"  # the benchmark's own Dagster storage, made afresh for each run
PGLOADER_TEMPLATE = REPO_ROOT / "bench" / "pgloader.load"
# The other tools cannot honour these: the target's migrations fill them (they would duplicate the rows)
SEEDED_SKIPS = {
    "kratos": ["identity_credential_types", "schema_migration"],
    "alkemio": ["migrations_typeorm", "query-result-cache"],
}


@dataclass
class Measure:
    name: str
    seconds: float
    rows: int
    megabytes: float
    peak_memory_mb: float
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0


def _proportional_kb(pid: int, resident_pages: int) -> int:
    """PSS: pages shared between processes (a forkserver's children share its imports) counted
    once across them, so that a tree's sum is its real footprint; RSS where PSS is unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_memory_mb(root: int) -> float:
    """Memory of `root` and all its descendants now, from /proc (MB, PSS)."""
    children: dict[int, list[int]] = {}
    resident: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        resident[pid] = int(fields[21])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in resident:
            total += _proportional_kb(pid, resident[pid])
        todo += children.get(pid, [])
    return total / 1024


class TreeMemory:
    """Peak of the summed memory (PSS) of a process tree, sampled while it runs."""

    def __init__(self, root: int, every: float = 0.1):
        self.root, self.every, self.peak = root, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _tree_memory_mb(self.root))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(
    command: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None, cwd: Path | None = None
) -> tuple[float, float]:
    """Wall seconds and peak memory (MB) of a command and its whole process tree; a command that
    hangs (Sling does, after some COPY errors) is killed after TIMEOUT seconds."""
    started = time.monotonic()
    with open(log or os.devnull, "w") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        memory = TreeMemory(process.pid)
        watchdog = threading.Timer(TIMEOUT, process.kill)
        watchdog.start()
        _, status, usage = os.wait4(process.pid, 0)
        watchdog.cancel()
        peak = memory.stop()
    seconds = time.monotonic() - started
    if seconds >= TIMEOUT:
        raise RuntimeError(f"{command[0]} still running after {TIMEOUT} s, killed; log: {log}")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[0]} failed ({status}); log: {log}")
    return seconds, peak or usage.ru_maxrss / 1024  # a command shorter than one sample: its own RSS


def servers(settings) -> tuple[MySQLResource, PostgresResource]:
    """The source and target servers of the settings, as our resources."""
    s, t = settings.source, settings.target
    return (
        MySQLResource(host=s.host, port=s.port, user=s.user, password=s.password()),
        PostgresResource(host=t.host, port=t.port, user=t.user, password=t.password()),
    )


# fixture -> (its schemas, its migration.toml): the real applications', or our hand-written one
FIXTURES: dict[str, tuple[Path, Path]] = {
    "real": (REAL, DEFAULT_CONFIG),
    "handwritten": (HANDWRITTEN, HANDWRITTEN_CONFIG),
}
FIXTURE = "real"


def fresh_targets(postgres: PostgresResource, prefix: str) -> dict[str, str]:
    names = {name: f"{prefix}_{name}" for name in FIXTURE_DATABASES}
    for name, database in names.items():
        postgres.create_database(database, drop_existing=True)
        apply_target_schema(postgres, name, database, FIXTURES[FIXTURE][0])
    return names


def source_databases(mysql: MySQLResource, scale: float, regenerate: bool) -> dict[str, str]:
    tag = str(scale).replace(".", "_")
    names = {name: f"bench_{FIXTURE}_s{tag}_{name}" for name in FIXTURE_DATABASES}
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'user'",
            (names["alkemio"],),
        )
        present = cur.fetchone()["n"] == 1
    if present and not regenerate:
        return names
    for name, database in names.items():
        mysql.create_database(database, drop_existing=True)
        apply_source_schema(mysql, name, database, FIXTURES[FIXTURE][0])
    started = time.monotonic()
    generate(mysql, names, scale)
    print(f"generated scale {scale} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return names


def table_sizes(mysql: MySQLResource, names: dict[str, str]) -> tuple[int, float]:
    rows, size = 0, 0.0
    with mysql.connect() as conn, conn.cursor() as cur:
        for database in names.values():
            for table in read_mysql_catalog(conn, database).tables:
                cur.execute(f"SELECT COUNT(*) AS n FROM `{database}`.`{table.name}`")
                rows += cur.fetchone()["n"]
            cur.execute(
                "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) AS s FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (database,),
            )
            size += float(cur.fetchone()["s"] or 0)
    return rows, size / 1e6


def ours(
    sources: dict[str, str], targets: dict[str, str], work: Path, logs: Path, postgres: PostgresResource
) -> tuple[Measure, Measure, dict]:
    """refresh_catalog, then migrate_all (export, staging, load, every check, report), headless.
    Dagster runs in the work folder: its CLI loads a .env from the working directory over the
    environment, and the repository's .env names the demo databases. Its instance is the
    repository's dagster.yaml (run and event storage in PostgreSQL, as operators run it) on a
    fresh storage database of its own, `bench_dagster`, so the UI's history holds no bench run."""
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    postgres.create_database(BENCH_DAGSTER_DB, drop_existing=True)
    env = {
        **os.environ,
        "MIGRATION_WORKDIR": str(work),
        "MIGRATION_CONFIG": str(FIXTURES[FIXTURE][1]),
        "DAGSTER_HOME": str(home),
        # on the server where it was just created, the target's
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": BENCH_DAGSTER_DB,
        "DAGSTER_ARTIFACTS_DIR": str(home / "artifacts"),
        "MYSQL_DATABASE": sources["alkemio"],
        "DATABASE_NAME": targets["alkemio"],
        "KRATOS_MYSQL_DATABASE": sources["kratos"],
        "KRATOS_DATABASE_NAME": targets["kratos"],
        # the benchmark's source is a copy made for it: no backup, no wait for quiet, no other databases
        "MIGRATION_BACKUP": "none",
        "MIGRATION_QUIET_SECONDS": "0",
        "MIGRATION_EXTRA_DATABASES": "",
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    job = [dagster, "job", "execute", "-m", "alkemio_assets.definitions", "-j"]
    run([*job, "refresh_catalog"], env, logs / "ours-catalog.log", cwd=work)
    seconds, rss = run([*job, "migrate_all"], env, logs / "ours.log", cwd=work)
    manifests = [json.loads(p.read_text()) for p in (work / "runs").glob("*/*/migration_manifest.json")]
    spans = [t["spans"] for m in manifests for t in m["tables"].values() if "spans" in t]
    first = min(s[0] for sp in spans for s in sp.values())

    def phase_end(stage: str) -> float:
        return max((sp[stage][1] for sp in spans if stage in sp), default=first)

    phases = {
        "export_stage_load": round(phase_end("load") - first, 1),
        "checks": round(phase_end("checks") - phase_end("load"), 1),
        "export_busy": round(sum(sp["export"][1] - sp["export"][0] for sp in spans if "export" in sp), 1),
        "stage_busy": round(sum(sp["stage"][1] - sp["stage"][0] for sp in spans if "stage" in sp), 1),
        "load_busy": round(sum(sp["load"][1] - sp["load"][0] for sp in spans if "load" in sp), 1),
        "checks_busy": round(sum(sp["checks"][1] - sp["checks"][0] for sp in spans if "checks" in sp), 1),
        "dagster_and_database_checks": round(seconds - (phase_end("checks") - first), 1),
    }
    rows = sum(t.get("loaded_rows") or 0 for m in manifests for t in m["tables"].values())
    megabytes = sum(t.get("bytes") or 0 for m in manifests for t in m["tables"].values()) / 1e6
    migration = Measure(
        "ours: export, stage, load (FKs proven)",
        phases["export_stage_load"],
        rows,
        megabytes,
        rss,
        "wall from the first export to the last load, inside the run",
    )
    total = Measure("ours: end to end with every check", seconds, rows, megabytes, rss, "the whole dagster job execute")
    return migration, total, phases


def pgloader_casts(mysql: MySQLResource, database: str) -> list[str]:
    """Enum and set columns go as text into the target's enum and varchar columns (pgloader would
    create enum types of its own)."""
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, database)
    return [
        f"column {table.name}.{column.name} to text drop typemod"
        for table in catalog.tables
        for column in table.columns
        if column.data_type in ("enum", "set")
    ]


def pgloader(
    sources: dict[str, str], targets: dict[str, str], logs: Path, rows: int, megabytes: float, settings
) -> Measure:
    template = PGLOADER_TEMPLATE.read_text()
    mysql = servers(settings)[0]
    total, peak = 0.0, 0.0
    for name in FIXTURE_DATABASES:
        source, target = settings.source, settings.target
        skips = ", ".join(f"'{t}'" for t in SEEDED_SKIPS[name])
        body = template.format(
            source=f"mysql://{source.user}@{source.host}:{source.port}/{sources[name]}",
            target=f"postgresql://{target.user}@{target.host}:{target.port}/{targets[name]}",
            schema=sources[name],
            excluding=skips,
            casts="".join(f",\n     {cast}" for cast in pgloader_casts(mysql, sources[name])),
        )
        script = logs / f"pgloader-{name}.load"
        script.write_text(body)
        seconds, rss = run(["pgloader", "--no-ssl-cert-verification", str(script)], None, logs / f"pgloader-{name}.log")
        total += seconds
        peak = max(peak, rss)
    # pgloader was told not to touch sequences (its reset fails on quoted identifiers): ours, timed
    total += set_sequences(servers(settings)[1], targets)
    return Measure(
        "pgloader (data only, 4 workers)",
        total,
        rows,
        megabytes,
        peak,
        "FKs re-created by pgloader; sequences set after",
    )


def loaded_rows(postgres: PostgresResource, targets: dict[str, str]) -> int:
    """Rows a contender left in its targets, excluding the tables the target's migrations fill."""
    rows = 0
    for name, database in targets.items():
        with postgres.connect(database) as conn:
            tables = conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            ).fetchall()
            for (table,) in tables:
                if table not in SEEDED_SKIPS[name]:
                    rows += first(conn.execute(f"SELECT count(*) FROM {pg_ident(table).as_string(None)}"))
    return rows


def set_sequences(postgres: PostgresResource, targets: dict[str, str]) -> float:
    """Every serial column's sequence past the loaded maximum, as our load does; seconds taken."""
    started = time.monotonic()
    for database in targets.values():
        with postgres.connect(database) as conn:
            conn.execute("""
                DO $$ DECLARE r record; BEGIN
                FOR r IN SELECT c.relname t, a.attname col, pg_get_serial_sequence(format('%I', c.relname), a.attname) s
                  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
                    AND pg_get_serial_sequence(format('%I', c.relname), a.attname) IS NOT NULL LOOP
                  EXECUTE format('SELECT setval(%L, COALESCE((SELECT max(%I) FROM %I), 0) + 1, false)', r.s, r.col, r.t);
                END LOOP; END $$""")
    return time.monotonic() - started


# rule -> the MySQL expression Sling reads instead of the column
SLING_EXPRESSIONS = {
    "bytea": "CONCAT(CHAR(92 USING utf8mb4), 'x', LOWER(HEX({c})))",
    "base64": "REPLACE(TO_BASE64({c}), CHAR(10), '')",
    # The stored UTF-8 bytes as base64, as pgloader moves them as they are: MySQL has no fast way
    # to turn each character back into its byte (latin1 is cp1252 there, and a REGEXP_REPLACE over
    # the UCS-2 hex took over ten minutes for the whiteboards at scale 1). The PostgreSQL
    # application still opens these through its legacy fallback; ours writes the canonical form.
    "latin1_base64": "REPLACE(TO_BASE64({c}), CHAR(10), '')",
}


def sling_binary() -> str:
    """SLING_BINARY, else the binary the PyPI package sling-linux-amd64 ships (the `sling`
    wrapper package would try to download one)."""
    if configured := os.environ.get("SLING_BINARY"):
        return configured
    spec = importlib.util.find_spec("sling_linux_amd64")
    if spec is None or spec.origin is None:
        raise RuntimeError("Sling is not installed: pip install -c constraints.txt -e '.[bench]' or set SLING_BINARY")
    binary = Path(spec.origin).parent / "bin" / "sling-linux-amd64"
    binary.chmod(0o755)
    return str(binary)


def sling_streams(
    mysql: MySQLResource, postgres: PostgresResource, source: str, target: str, pair: DatabasePair
) -> dict:
    """One stream per table, planned by our own catalog: casts where Sling's defaults lose values."""
    with mysql.connect() as conn:
        catalog = read_mysql_catalog(conn, source)
    with postgres.connect(target) as conn:
        plans, _ = plan_tables(pair, catalog, read_pg_catalog(conn, target))
    streams: dict[str, dict] = {}
    for table, plan in plans.items():
        if table in SEEDED_SKIPS[pair.name]:
            continue
        stream: dict = {"object": f'public."{table}"', "update_key": plan.columns[0].name}
        # Sling sends bytes as text (PostgreSQL refuses them as UTF-8, and Sling then hangs):
        # MySQL writes them as bytea hex or, for the base64 override, as base64
        if any(c.rule.name in SLING_EXPRESSIONS for c in plan.columns):
            select = ", ".join(
                SLING_EXPRESSIONS.get(c.rule.name, "{c}").format(c=mysql_ident(c.name)) + f" AS {mysql_ident(c.name)}"
                for c in plan.columns
            )
            # custom SQL in incremental mode must carry Sling's placeholder (true on an empty target)
            table_sql = f"{mysql_ident(source)}.{mysql_ident(table)}"
            streams[f"SELECT {select} FROM {table_sql} WHERE {{incremental_where_cond}}"] = stream
        else:
            streams[f"{source}.{mysql_ident(table)}" if "-" in table else f"{source}.{table}"] = stream
    return streams


def halves(streams: dict[str, dict], sizes: dict[str, float]) -> list[dict[str, dict]]:
    """Two lists of streams of about equal size, largest first."""
    parts: list[dict[str, dict]] = [{}, {}]
    loads = [0.0, 0.0]
    for key, stream in sorted(streams.items(), key=lambda kv: -sizes.get(kv[1]["object"], 0.0)):
        i = loads.index(min(loads))
        parts[i][key] = stream
        loads[i] += sizes.get(stream["object"], 0.0)
    return parts


def sling(
    sources: dict[str, str], targets: dict[str, str], logs: Path, rows: int, megabytes: float, settings
) -> Measure:
    """Sling's fairest setup on a schema-first target: incremental mode with an update key into
    empty tables (append), direct insert (no temp table), FK triggers off through the URL
    (session_replication_role=replica), casts for bytes, column names as in the source, two
    processes over balanced table lists, sequences set afterwards."""
    s, t = settings.source, settings.target
    mysql, postgres = servers(settings)
    binary = sling_binary()
    total = peak = 0.0
    for name in FIXTURE_DATABASES:
        source, target = sources[name], targets[name]
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME AS t, DATA_LENGTH AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (source,),
            )
            sizes = {f'public."{r["t"]}"': float(r["n"] or 0) for r in cur.fetchall()}
        streams = sling_streams(mysql, postgres, source, target, settings.pair(name))
        # connections travel in the environment, never in the arguments
        env = {
            **os.environ,
            "SLING_HOME_DIR": str(logs / "sling-home"),
            "SLING_DIRECT_INSERT": "true",
            "MYSQL_SOURCE": f"mysql://{quote(s.user)}:{quote(s.password(), safe='')}@{s.host}:{s.port}/{source}",
            "PG_TARGET": f"postgresql://{quote(t.user)}:{quote(t.password(), safe='')}@{t.host}:{t.port}/{target}"
            "?sslmode=disable&session_replication_role=replica",
        }
        commands = []
        for i, part in enumerate(halves(streams, sizes)):
            replication = logs / f"sling-{name}-{i}.json"
            replication.write_text(
                json.dumps(
                    {
                        "source": "MYSQL_SOURCE",
                        "target": "PG_TARGET",
                        "defaults": {
                            "mode": "incremental",
                            "target_options": {"column_casing": "source", "add_new_columns": False},
                        },
                        "streams": part,
                    },
                    indent=1,
                )
            )
            commands.append([binary, "run", "-r", str(replication)])
        seconds, rss = run_parallel(commands, 2, logs / f"sling-{name}.log", env)
        total += seconds
        peak = max(peak, rss)
    total += set_sequences(postgres, targets)
    return Measure(
        "Sling (append, direct insert, 2 processes)",
        total,
        rows,
        megabytes,
        peak,
        f"sling {subprocess.run([binary, '--version'], capture_output=True, text=True).stdout.split()[-1]}; "
        "sequences set after",
    )


def run_parallel(
    commands: list[list[str]], workers: int, log: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds for all commands, `workers` at a time, and the sum of their peak memory (MB):
    an upper bound of what ran at once."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        peaks = list(
            pool.map(lambda ic: run(ic[1], env, log.with_name(f"{log.stem}-{ic[0]}.log"))[1], enumerate(commands))
        )
    return time.monotonic() - started, sum(sorted(peaks)[-workers:])


def physical_limit(
    sources: dict[str, str],
    staged: list[Path],
    targets: dict[str, str],
    rows: int,
    megabytes: float,
    settings,
    logs: Path,
) -> tuple[Measure, Measure]:
    """A raw full read of every source table (the MySQL client to /dev/null, 2 at once), and a raw
    COPY of our load-ready files into a fresh indexed baseline (psql, 2 at once)."""
    s, t = settings.source, settings.target
    reads = []
    with servers(settings)[0].connect() as conn:
        for database in sources.values():
            for table in read_mysql_catalog(conn, database).tables:
                query = f"SELECT * FROM {mysql_ident(database)}.{mysql_ident(table.name)}"
                reads.append(
                    [
                        "bash",
                        "-c",
                        'exec "$@" > /dev/null',
                        "read",
                        "mariadb",
                        "--protocol=tcp",
                        "-h",
                        s.host,
                        "-P",
                        str(s.port),
                        "-u",
                        s.user,
                        "--quick",
                        "--batch",
                        "-e",
                        query,
                    ]
                )
    read_seconds, read_rss = run_parallel(reads, 2, logs / "limit-read.log")
    copies = []
    for path in staged:
        database = targets[path.parent.parent.name]
        # the file's own column order (the source's), named: the target's order can differ
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        columns = ", ".join(pg_ident(c).as_string(None) for c in header)
        copy = f"\\copy {pg_ident(path.stem).as_string(None)} ({columns}) FROM '{path}' (FORMAT csv, HEADER true)"
        copies.append(
            [
                "psql",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                t.host,
                "-p",
                str(t.port),
                "-U",
                t.user,
                "-d",
                database,
                "-c",
                "SET session_replication_role = replica",
                "-c",  # the target's migrations pre-fill some tables (Kratos credential types)
                f"DELETE FROM {pg_ident(path.stem).as_string(None)}",
                "-c",
                copy,
            ]
        )
    copy_seconds, copy_rss = run_parallel(copies, 2, logs / "limit-copy.log")
    return (
        Measure(
            "limit: raw read of every source table",
            read_seconds,
            rows,
            megabytes,
            read_rss,
            "mariadb --quick > /dev/null, 2 at once",
        ),
        Measure(
            "limit: raw COPY of load-ready files",
            copy_seconds,
            rows,
            megabytes,
            copy_rss,
            "psql \\copy into the indexed baseline, 2 at once",
        ),
    )


def main(argv: list[str] | None = None) -> int:
    global TIMEOUT, FIXTURE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--fixture", choices=sorted(FIXTURES), default=FIXTURE, help="whose schemas (default: real)")
    parser.add_argument("--regenerate", action="store_true", help="generate the source again even if present")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds before a hung command is killed")
    args = parser.parse_args(argv)
    TIMEOUT, FIXTURE = args.timeout, args.fixture
    settings = load_settings(config_path=FIXTURES[FIXTURE][1])
    mysql, postgres = servers(settings)

    sources = source_databases(mysql, args.scale, args.regenerate)
    rows, source_mb = table_sizes(mysql, sources)
    (settings.workdir / "bench").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"scale-{args.scale}-{FIXTURE}-", dir=settings.workdir / "bench"))
    logs = work / "logs"
    logs.mkdir(parents=True)

    migration, total, phases = ours(sources, fresh_targets(postgres, "bench_ours"), work, logs, postgres)
    contenders = [migration, total]
    tools = {"bench_pgl": pgloader, "bench_sling": sling}
    for prefix, tool in tools.items():
        targets = fresh_targets(postgres, prefix)
        measure = tool(sources, targets, logs, migration.rows, migration.megabytes, settings)
        # the same rows, or the comparison says so
        if (moved := loaded_rows(postgres, targets)) != migration.rows:
            measure.note += f"; MOVED {moved} ROWS, ours {migration.rows}"
        contenders.append(measure)
    pgl, sl = contenders[-2:]
    staged = sorted(work.glob("runs/*/*/staged/*.csv"))
    read, copy = physical_limit(
        sources, staged, fresh_targets(postgres, "bench_limit"), migration.rows, migration.megabytes, settings, logs
    )
    limit = Measure(
        "limit: read + COPY",
        read.seconds + copy.seconds,
        migration.rows,
        migration.megabytes,
        max(read.peak_memory_mb, copy.peak_memory_mb),
    )
    contenders += [read, copy, limit]

    print(
        f"\n{FIXTURE} fixture, scale {args.scale}: {rows} source rows, {source_mb:.0f} MB of MySQL data+indexes, {migration.megabytes:.0f} MB of CSV\n"
    )
    print(f"| {'contender':<42} | {'wall s':>8} | {'rows/s':>9} | {'MB/s':>6} | {'peak MB (PSS)':>13} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 11}|{'-' * 8}|{'-' * 15}|")
    for m in contenders:
        print(
            f"| {m.name:<42} | {m.seconds:>8.1f} | {m.rows_per_second:>9.0f} | {m.mb_per_second:>6.1f} | {m.peak_memory_mb:>13.0f} |"
        )
    best = min(pgl, sl, key=lambda m: m.seconds)
    ratios = {
        "migration / pgloader": round(migration.seconds / pgl.seconds, 2),
        "migration / Sling": round(migration.seconds / sl.seconds, 2),
        "migration / faster tool": round(migration.seconds / best.seconds, 2),
        "end to end / faster tool": round(total.seconds / best.seconds, 2),
        "migration / limit": round(migration.seconds / limit.seconds, 2),
        "end to end / limit": round(total.seconds / limit.seconds, 2),
    }
    print("\n" + ", ".join(f"{k}: {v}" for k, v in ratios.items()))
    print("ours, phases (s): " + ", ".join(f"{k} {v}" for k, v in phases.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{args.scale}-{FIXTURE}.json"
    out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "system": platform.platform(),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                },
                "fixture": FIXTURE,
                "scale": args.scale,
                "source_rows": rows,
                "source_mb": round(source_mb, 1),
                "contenders": [
                    {
                        **asdict(m),
                        "rows_per_second": round(m.rows_per_second),
                        "mb_per_second": round(m.mb_per_second, 1),
                    }
                    for m in contenders
                ],
                "ratios": ratios,
                "ours_phases": phases,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nwritten {out.relative_to(REPO_ROOT)}; logs in {logs}")
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    sys.exit(main())
