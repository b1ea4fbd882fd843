"""Faults survived on purpose, against the real servers: a changed file, a second run, a server
connection lost in the middle of an export or a load, a full disk. Each leaves every table of
the target database as it was (rows, hashes, constraints, triggers, no helper objects) and names
what happened; where a retry or a second run can complete, it completes with the source's data."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from conftest import failed_error_checks, failure_message, migration_settings, run_job, target_state

from alkemio_assets.catalog.contract import plan_database
from alkemio_assets.catalog.source import read_mysql_catalog
from alkemio_assets.catalog.target import read_pg_catalog
from alkemio_assets.core.settings import REPO_ROOT, Settings
from alkemio_assets.graph.keys import stage_key
from alkemio_assets.stages.consistent_read import ConsistentRead
from alkemio_assets.stages.export import export_table
from alkemio_assets.stages.run_lock import migration_lock
from resources import MySQLResource, PostgresResource

pytestmark = pytest.mark.e2e

ROWS = 3_000
CONFIG = """
[databases.faults]
source_database = "faults"
target_database = "faults"
"""


@pytest.fixture
def faults(
    mysql: MySQLResource, postgres: PostgresResource, unique_name: str, tmp_path: Path
) -> Iterator[tuple[Settings, str]]:
    """Two tables, parent and child, a few thousand rows, the target empty."""
    database = f"{unique_name}_faults"
    mysql.create_database(database)
    postgres.create_database(database)
    try:
        mysql.execute_script(
            database,
            [
                "CREATE TABLE parent (id int PRIMARY KEY, name varchar(40) NOT NULL)",
                "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL, note text, "
                "FOREIGN KEY (parent_id) REFERENCES parent (id))",
                "INSERT INTO parent VALUES " + ", ".join(f"({i}, 'parent {i}')" for i in range(1, 101)),
                "INSERT INTO child VALUES "
                + ", ".join(f"({i}, {1 + i % 100}, '{'x' * (i % 50)}')" for i in range(1, ROWS + 1)),
            ],
        )
        postgres.execute_script(
            database,
            "CREATE TABLE parent (id integer PRIMARY KEY, name varchar(40) NOT NULL);"
            "CREATE TABLE child (id integer PRIMARY KEY, parent_id integer NOT NULL REFERENCES parent (id), note text);",
        )
        config = tmp_path / "migration.toml"
        config.write_text(CONFIG)
        settings = migration_settings({"faults": database}, str(tmp_path / "work"), config_path=config)
        settings = replace(settings, retry_seconds=0)
        result = run_job(settings, dg.DagsterInstance.ephemeral(), "refresh_catalog")
        assert result.success
        yield settings, database
    finally:
        mysql.drop_database(database)
        postgres.drop_database(database)


def _migrate(settings: Settings, instance: dg.DagsterInstance, selection: list[str] | None = None):
    return run_job(settings, instance, "migrate_faults", selection)


def _rows(postgres: PostgresResource, database: str) -> dict[str, int]:
    with postgres.connect(database) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("parent", "child")}


def _completes(settings: Settings, instance: dg.DagsterInstance, postgres: PostgresResource, database: str) -> None:
    """A run after the fault moves everything, and every ERROR check passes."""
    result = _migrate(settings, instance)
    assert result.success, failure_message(result)
    assert _rows(postgres, database) == {"parent": 100, "child": ROWS}
    assert failed_error_checks(result) == []


def _when(condition: Callable[[], object], seconds: float = 60) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError("the condition never held")


def test_a_changed_csv_file_is_not_staged(faults, instance, postgres):
    settings, database = faults
    assert _migrate(settings, instance, ["faults/csv/child.csv", "faults/csv/parent.csv"]).success
    (csv,) = (settings.workdir / "runs").glob("*/faults/csv/child.csv")
    csv.write_bytes(csv.read_bytes().replace(b"xxxx", b"yyyy", 1))
    before = target_state(postgres, database)
    result = _migrate(
        settings,
        instance,
        [stage_key("faults", s, t).to_user_string() for s in ("staged", "postgres") for t in ("parent", "child")],
    )
    assert not result.success
    message = failure_message(result)
    assert "faults.child staging" in message and "the file changed since it was written" in message
    assert target_state(postgres, database) == before
    _completes(settings, instance, postgres, database)


def test_a_changed_staged_file_is_not_loaded(faults, instance, postgres):
    settings, database = faults
    assert _migrate(
        settings,
        instance,
        [stage_key("faults", s, t).to_user_string() for s in ("csv", "staged") for t in ("parent", "child")],
    ).success
    (staged,) = (settings.workdir / "runs").glob("*/faults/staged/parent.csv")
    staged.write_bytes(staged.read_bytes().replace(b"parent 7", b"parent 8", 1))
    before = target_state(postgres, database)
    result = _migrate(settings, instance, ["faults/postgres/parent", "faults/postgres/child"])
    assert not result.success
    message = failure_message(result)
    assert "faults.parent" in message and "it changed since it was written. Nothing was committed" in message
    assert target_state(postgres, database) == before


def test_a_failed_runs_files_are_never_inputs(faults, instance, postgres, mysql):
    """The CSV file of a run that failed (here: a later table's bad value) is not staged by a
    later run: only a succeeded run's files are."""
    settings, database = faults
    mysql.execute_script(database, ["ALTER TABLE child MODIFY note text CHARACTER SET latin1"])
    mysql.execute_script(database, ["UPDATE child SET note = X'01' WHERE id = 5"])
    run_job(settings, instance, "refresh_catalog")
    failed = _migrate(settings, instance, [f"faults/csv/{t}.csv" for t in ("parent", "child")])
    assert not failed.success
    assert "faults.child, row id=5" in failure_message(failed)
    assert list((settings.workdir / "runs").glob(f"{failed.run_id}/faults/csv/parent.csv")), "parent's file was written"
    result = _migrate(settings, instance, ["faults/staged/parent.staged"])
    assert not result.success
    assert (
        "no run of faults that succeeded has its csv file; materialize faults/csv/parent.csv first"
        in failure_message(result)
    )


def test_a_second_run_refuses_at_once_naming_the_first(faults, instance, postgres):
    settings, database = faults
    before = target_state(postgres, database)
    with migration_lock(postgres, database, "migrate_faults_tables", "first-run-id"):
        # a second step of the same run goes along (a sharded database's steps run at once)
        with migration_lock(postgres, database, "migrate_faults_tables_2_of_2", "first-run-id"):
            pass
        started = time.monotonic()
        result = _migrate(settings, instance)
        assert not result.success and time.monotonic() - started < 30
        message = failure_message(result)
        assert "another migration is running on this target database" in message
        assert "'alkemio-migration run first-run-id migrate_faults_tables'" in message
    assert target_state(postgres, database) == before
    _completes(settings, instance, postgres, database)


def _blocked_on(postgres: PostgresResource, database: str, application: str) -> int | None:
    """The pid of our session named `application...` that waits for a lock, if there is one."""
    with postgres.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s "
            "AND wait_event_type = 'Lock'",
            (application + "%",),
        ).fetchone()
    return row[0] if row else None


def _load_held(postgres: PostgresResource, database: str, terminations: int, release: bool):
    """A test session holds the target's child table, so that the run's load waits inside COPY's
    transaction; the load's session is terminated `terminations` times as PostgreSQL would on a
    restart, then the table is released (or not)."""

    def fault() -> None:
        with postgres.connect(database) as holder:
            holder.execute("LOCK TABLE child IN ACCESS EXCLUSIVE MODE")
            for _ in range(terminations):
                pid = _when(lambda: _blocked_on(postgres, database, "alkemio-migration load"))
                with postgres.connect(database, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                _when(lambda gone=pid: _blocked_on(postgres, database, "alkemio-migration load") != gone, 30)
            if not release:
                time.sleep(1)
            holder.rollback()

    thread = threading.Thread(target=fault, daemon=True)
    thread.start()
    return thread


def test_a_lost_target_connection_during_the_load_is_retried_and_completes(faults, instance, postgres):
    settings, database = faults
    thread = _load_held(postgres, database, terminations=1, release=True)
    result = _migrate(settings, instance)
    thread.join(60)
    assert result.success, failure_message(result)
    assert _rows(postgres, database) == {"parent": 100, "child": ROWS}
    logs = "\n".join(e.message for e in instance.all_logs(result.run_id) if e.user_message)
    assert "the connection to PostgreSQL" in logs and "was lost" in logs and "trying again" in logs


def test_a_target_connection_lost_every_time_is_named_and_commits_nothing(faults, instance, postgres):
    settings, database = replace(faults[0], retries=1), faults[1]
    before = target_state(postgres, database)
    thread = _load_held(postgres, database, terminations=2, release=False)
    result = _migrate(settings, instance)
    thread.join(60)
    assert not result.success
    message = failure_message(result)
    assert "faults load (2 tables, nothing committed): the connection to PostgreSQL" in message
    assert "was lost (tried 2 times)" in message and "refused the row" not in message
    assert target_state(postgres, database) == before
    _completes(settings, instance, postgres, database)


@pytest.fixture
def reader_without_reload(mysql: MySQLResource, faults, unique_name: str, monkeypatch) -> Iterator[Settings]:
    """The run reads as a MySQL user without RELOAD (no global read lock): SELECT, and
    REFERENCES, without which MariaDB hides the foreign keys from information_schema."""
    settings, database = faults
    user = f"r{unique_name[-10:]}"
    with mysql.connect() as conn, conn.cursor() as cur:
        for host in ("%", "localhost"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY 'reader-pw'")
            cur.execute(f"GRANT SELECT, REFERENCES ON `{database}`.* TO '{user}'@'{host}'")
    monkeypatch.setenv("MYSQL_USER", user)
    monkeypatch.setenv("MYSQL_PASSWORD", "reader-pw")
    try:
        yield replace(
            migration_settings({"faults": database}, str(settings.workdir), config_path=settings_config(settings)),
            retry_seconds=0,
        )
    finally:
        with mysql.connect() as conn, conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def settings_config(settings: Settings) -> Path:
    return settings.workdir.parent / "migration.toml"


def test_a_lost_source_connection_during_the_export_is_retried(
    faults, reader_without_reload, instance, postgres, mysql
):
    """The export's MySQL session is killed while it waits for the table (held by a test
    session's LOCK TABLES); the retry exports the table whole. The reader lacks RELOAD, so the
    run says that each connection reads its own moment (with RELOAD the global read lock would
    wait for the test's table lock, and nothing would be exported to kill)."""
    _, database = faults
    settings = reader_without_reload

    def exporting() -> int | None:
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE db = %s AND info LIKE 'SELECT%%child%%' "
                "AND state LIKE '%%lock%%'",
                (database,),
            )
            row = cur.fetchone()
        return row["id"] if row else None

    def fault() -> None:
        with mysql.connect(database) as holder, holder.cursor() as cur:
            cur.execute("LOCK TABLES child WRITE")
            victim = _when(exporting)
            with mysql.connect() as admin, admin.cursor() as kill:
                kill.execute(f"KILL {int(victim)}")
            cur.execute("UNLOCK TABLES")

    thread = threading.Thread(target=fault, daemon=True)
    thread.start()
    time.sleep(0.5)  # the table lock is taken before the run starts
    result = _migrate(settings, instance)
    thread.join(60)
    assert result.success, failure_message(result)
    assert _rows(postgres, database) == {"parent": 100, "child": ROWS}
    logs = "\n".join(e.message for e in instance.all_logs(result.run_id) if e.user_message)
    assert "may not FLUSH TABLES WITH READ LOCK (RELOAD privilege)" in logs
    assert "faults.child export: the connection to MySQL" in logs and "trying again" in logs
    assert "faults.child: exported again outside the run's moment of the source" in logs


def test_a_full_disk_is_named_and_leaves_no_partial_file(faults, instance, postgres):
    """A file-size limit (what a full disk looks like to a writer): the export's write fails;
    the error names the file and the space left, no .part file stays, the target is unchanged."""
    settings, database = faults
    before = target_state(postgres, database)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, hard))
    try:
        result = _migrate(settings, instance, ["faults/csv/child.csv"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert not result.success
    message = failure_message(result)
    assert "faults.child export: no room to write" in message and "child.csv.part" in message
    assert "the file size limit (ulimit -f) is reached" in message and "bytes left on its filesystem" in message
    assert not list(settings.workdir.rglob("*.part"))
    assert target_state(postgres, database) == before
    _completes(settings, instance, postgres, database)


def test_a_run_log_that_cannot_be_written_is_said_and_moves_nothing_less(faults, instance, postgres):
    """The run log is evidence, not the migration: when it cannot be written the step says so in
    its output and the migration goes on; the manifest still records what moved."""
    settings, database = faults
    (settings.workdir / "runs" / "migration_log.jsonl").mkdir(parents=True)  # a folder where the file goes
    result = _migrate(settings, instance)
    assert result.success, failure_message(result)
    said = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("the run log" in m and "could not be written (started)" in m for m in said)
    assert _rows(postgres, database) == {"parent": 100, "child": ROWS}
    assert instance.get_run_by_id(result.run_id).tags["alkemio/faults"] == "completed"


KILLED_STEP = """
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
import dagster as dg
from conftest import migration_settings, run_job
args = json.loads(sys.argv[1])
settings = migration_settings(args["databases"], args["workdir"], config_path=Path(args["config"]))
with dg.DagsterInstance.ephemeral() as instance:
    run_job(settings, instance, "migrate_faults")
"""


def test_a_step_killed_during_the_load_leaves_nothing_half_done(faults, instance, postgres, tmp_path):
    """SIGKILL of the process that runs the step while its load's transaction holds the parent's
    rows (the child's COPY waits for a test session's lock): PostgreSQL rolls the transaction
    back when it sees the client gone, and the advisory lock goes with the session."""
    settings, database = faults
    before = target_state(postgres, database)
    args = {
        "databases": {"faults": database},
        "workdir": str(settings.workdir),
        "config": str(tmp_path / "migration.toml"),
    }
    with postgres.connect(database) as holder:
        holder.execute("LOCK TABLE child IN ACCESS EXCLUSIVE MODE")
        log = (tmp_path / "step.log").open("w")
        step = subprocess.Popen(
            [sys.executable, "-c", KILLED_STEP, json.dumps(args)], cwd=REPO_ROOT, stdout=log, stderr=log
        )
        try:
            assert _when(lambda: _blocked_on(postgres, database, "alkemio-migration load") or step.poll() is not None)
            assert step.poll() is None, (tmp_path / "step.log").read_text()[-3000:]
        finally:
            step.send_signal(signal.SIGKILL)
            step.wait(30)
        holder.rollback()  # the load's session runs on, finds its client gone, and rolls back
    _when(lambda: target_state(postgres, database) == before, 60)
    _completes(settings, instance, postgres, database)


def test_writes_during_the_export_are_not_in_it(faults, mysql, postgres, tmp_path):
    """The export's connections read the moment the run took under the global read lock: rows
    inserted, changed or deleted afterwards, by another session, are not in any of its files."""
    settings, database = faults
    pair = settings.pair("faults")
    with mysql.connect(database) as conn:
        source = read_mysql_catalog(conn, database)
    with postgres.connect(database) as conn:
        plans = plan_database(pair, source, read_pg_catalog(conn, database))
    notes: list[str] = []
    with ConsistentRead(mysql, database, 2, notes.append) as moment:
        assert moment.locked and notes == []
        mysql.execute_script(
            database,
            [
                "INSERT INTO parent VALUES (101, 'written during the export')",
                "UPDATE child SET note = 'changed during the export' WHERE id = 1",
                "DELETE FROM child WHERE id = 2",
            ],
        )
        with moment.connection() as first, moment.connection() as second:
            parent = export_table(first, plans["parent"], tmp_path / "parent.csv")
            child = export_table(second, plans["child"], tmp_path / "child.csv")
    assert (parent.rows, child.rows) == (100, ROWS)
    text = ((tmp_path / "parent.csv").read_bytes() + (tmp_path / "child.csv").read_bytes()).decode()
    assert "during the export" not in text and "\r\n2,3," in text
    with mysql.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM child")
        assert cur.fetchone()["n"] == ROWS - 1  # the writes happened


def _as_server_user(command: list[str]) -> None:
    """Run a PostgreSQL server program as the `postgres` user (it refuses root)."""
    if os.getuid() == 0:
        command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresResource, Callable[[], None]]]:
    """A PostgreSQL cluster of this test's own, from the machine's server binaries, and how to
    restart it."""
    bindir = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    data = Path(tempfile.mkdtemp(prefix="alkemio-pg-", dir="/var/tmp"))
    if os.getuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c fsync=off"
    _as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    _as_server_user([*ctl, "-l", str(data / "server.log"), "-o", options, "start"])
    try:
        yield (
            PostgresResource(host="127.0.0.1", port=port, user="postgres", password=""),
            lambda: _as_server_user([*ctl, "-l", str(data / "server.log"), "-m", "fast", "restart"]),
        )
    finally:
        with suppress(subprocess.CalledProcessError):
            _as_server_user([*ctl, "-m", "immediate", "stop"])
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_restarted_during_the_load_is_survived(faults, private_postgres, instance, monkeypatch):
    """The target server restarts (`pg_ctl restart -m fast`) while the load's transaction is
    open: the retry connects again once the server is back, and the run completes."""
    _, database = faults
    target, restart = private_postgres
    target.create_database(database)
    target.execute_script(
        database,
        "CREATE TABLE parent (id integer PRIMARY KEY, name varchar(40) NOT NULL);"
        "CREATE TABLE child (id integer PRIMARY KEY, parent_id integer NOT NULL REFERENCES parent (id), note text);",
    )
    monkeypatch.setenv("DATABASE_PORT", str(target.port))
    settings = replace(faults[0], target=replace(faults[0].target, port=target.port), retry_seconds=1)
    assert run_job(settings, instance, "refresh_catalog").success

    def fault() -> None:
        holder = psycopg.connect(host="127.0.0.1", port=target.port, user="postgres", dbname=database)
        holder.execute("LOCK TABLE child IN ACCESS EXCLUSIVE MODE")
        _when(lambda: _blocked_on(target, database, "alkemio-migration load"))
        restart()
        with suppress(psycopg.Error):
            holder.close()

    restarted = threading.Event()
    thread = threading.Thread(target=lambda: (fault(), restarted.set()), daemon=True)
    thread.start()
    result = _migrate(settings, instance)
    thread.join(120)
    assert restarted.is_set(), "the server was restarted during the load"
    assert result.success, failure_message(result)
    assert _rows(target, database) == {"parent": 100, "child": ROWS}
    logs = "\n".join(e.message for e in instance.all_logs(result.run_id) if e.user_message)
    assert "faults load (2 tables, nothing committed): the connection to PostgreSQL" in logs and "trying again" in logs
