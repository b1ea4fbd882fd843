"""The single entry point named by workspace.yaml: per database pair its catalog snapshot, the
table assets of graph/ and the verification of operations/, then the report and the cut-over,
the jobs, the resources and the executor."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable

import dagster as dg

from alkemio_assets.catalog.snapshot import read_snapshot
from alkemio_assets.core.settings import DatabasePair, Settings, SettingsError, load_settings
from alkemio_assets.graph.factory import build_pair_definitions
from alkemio_assets.operations.cutover import CUTOVER_KEY, cutover_asset
from alkemio_assets.operations.monitor import MONITOR_JOB, monitor_checks, monitoring_schedule
from alkemio_assets.operations.preflight import PREFLIGHT_KEY, preflight_asset
from alkemio_assets.operations.report import REPORT_KEY, report_asset
from alkemio_assets.operations.rollback import rollback_job
from alkemio_assets.operations.schema import later_key, later_migrations_asset, prepare_schema_job
from alkemio_assets.operations.verified import verified_asset, verified_key
from resources import MySQLResource, PostgresResource

# Everything this code location writes (CSV and staged files, DuckDB files, manifests, the
# report, the cut-over settings, compute logs) holds e-mail addresses and Kratos credential
# hashes: readable by its owner only. Every process that loads the definitions (the webserver,
# the daemon, a run, its steps and their forkserver children) creates files 0600, folders 0700.
PRIVATE_UMASK = 0o077
os.umask(PRIVATE_UMASK)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "mysql": MySQLResource(
            host=settings.source.host,
            port=settings.source.port,
            user=settings.source.user,
            password=dg.EnvVar(settings.source.password_env),
        ),
        "postgres": PostgresResource(
            host=settings.target.host,
            port=settings.target.port,
            user=settings.target.user,
            password=dg.EnvVar(settings.target.password_env),
        ),
    }


def assets_of(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]


def build_jobs(pairs: dict[str, dg.Definitions], with_report: bool) -> list[dg.UnresolvedAssetJobDefinition]:
    """preflight, refresh_catalog, migrate_NAME per pair (tables and their verification), migrate_all;
    every migrate job starts with the preflight, which holds back the tables when it fails."""
    keys = {name: [k for a in assets_of(d) for k in a.keys] for name, d in pairs.items()}
    jobs = [
        dg.define_asset_job(
            "preflight",
            selection=dg.AssetSelection.assets(PREFLIGHT_KEY),
            description="Both servers, their versions, grants and extensions, and disk: before anything moves.",
        ),
        dg.define_asset_job(
            "refresh_catalog",
            selection=dg.AssetSelection.assets(
                *(k for ks in keys.values() for k in ks if k.path[-1] == "source_catalog")
            ),
            description="Re-read both schemas of every database pair into the catalog snapshots (and check the contract).",
        ),
    ]
    moving = {name: [k for k in ks if k.path[-1] != "source_catalog"] for name, ks in keys.items()}
    for name, ks in moving.items():
        if ks:
            jobs.append(
                dg.define_asset_job(
                    f"migrate_{name}",
                    selection=dg.AssetSelection.assets(PREFLIGHT_KEY, *ks),
                    description=f"Export, stage, load and verify every table of {name}.",
                    tags={"alkemio/target": name},
                )
            )
    everything = [k for ks in moving.values() for k in ks] + ([REPORT_KEY, CUTOVER_KEY] if with_report else [])
    if everything:
        jobs.append(
            dg.define_asset_job(
                "migrate_all",
                selection=dg.AssetSelection.assets(PREFLIGHT_KEY, *everything),
                description="Every table of every database pair, the checks, the report and the cut-over settings.",
            )
        )
    return jobs


# Few, large steps (one per database for all its tables, then verification and report): each
# step's process comes from a forkserver that has this code imported already (about 0.5 s a
# step here, against 1 s and more spawned; the factory imports every module a step runs), two at a
# time for the two cores.
EXECUTOR = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 2,
        "start_method": {"forkserver": {"preload_modules": [build_pair_definitions.__module__]}},
    }
)


def _kubernetes() -> dg.ExecutorDefinition:
    # each step a Kubernetes Job; configured by run config (examples/kubernetes/run_config.yaml)
    from dagster_k8s import k8s_job_executor  # the optional extra [kubernetes]

    return k8s_job_executor


# MIGRATION_EXECUTOR chooses the engine; the definitions are the same on one machine and on a cluster
EXECUTORS: dict[str, Callable[[], dg.ExecutorDefinition]] = {
    "multiprocess": lambda: EXECUTOR,
    "kubernetes": _kubernetes,
}


def executor(name: str | None = None) -> dg.ExecutorDefinition:
    name = name or os.environ.get("MIGRATION_EXECUTOR") or "multiprocess"
    if name not in EXECUTORS:
        raise SettingsError(f"MIGRATION_EXECUTOR={name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()


# what a command line names when it asks for the snapshot itself
TAKES_SNAPSHOT = ("refresh_catalog", "source_catalog")


def _say_snapshot_missing() -> bool:
    """A missing or stale snapshot is said where a person started the process (the CLI, the UI),
    not again by each step process of a run (Dagster's forkserver children), and not to a person
    whose command is the one that takes the snapshot (`dg launch --job refresh_catalog`)."""
    if multiprocessing.parent_process() is not None:
        return False
    return not any(name in arg for arg in sys.argv[1:] for name in TAKES_SNAPSHOT)


def pair_definitions(pair: DatabasePair, settings: Settings) -> dg.Definitions:
    """A database pair's catalog asset, and once its snapshot exists, its tables and `DB/verified`."""
    snapshot = read_snapshot(pair.name, settings.catalog_dir, warn=_say_snapshot_missing())
    tables = build_pair_definitions(pair, settings, snapshot, after=[PREFLIGHT_KEY])
    if snapshot is None:
        return tables
    loaded = [k for a in assets_of(tables) for k in a.keys if k.path[1] == "postgres"]
    later = [later_migrations_asset(pair, settings)] if pair.later else []
    return dg.Definitions.merge(
        tables,
        dg.Definitions(
            assets=[verified_asset(pair, settings, loaded, snapshot), *later],
            asset_checks=[monitor_checks(pair, settings, snapshot)],
        ),
    )


def build_definitions(settings: Settings | None = None, engine: str | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    pairs = {pair.name: pair_definitions(pair, settings) for pair in settings.pairs}
    keys = {k for d in pairs.values() for a in assets_of(d) for k in a.keys}
    verified = [verified_key(p) for p in settings.pairs if verified_key(p) in keys]
    # the report waits for the later migrations too: it shows the versions after them
    upstream = verified + [later_key(p) for p in settings.pairs if later_key(p) in keys]
    # the ERROR checks (blocking): what the cut-over reads before it goes
    gates = [spec.key for d in pairs.values() for a in assets_of(d) for spec in a.check_specs if spec.blocking]
    report = (
        dg.Definitions(assets=[report_asset(settings, upstream), cutover_asset(settings, gates)])
        if verified
        else dg.Definitions()
    )
    monitors = [k for d in pairs.values() for c in d.asset_checks or [] for k in c.check_keys]
    monitor = dg.define_asset_job(
        MONITOR_JOB,
        selection=dg.AssetSelection.checks(*monitors),
        description="After the cut-over: each database's integrity on the target, and its rows against the load.",
    )
    automation = (
        dg.Definitions(jobs=[monitor], schedules=[monitoring_schedule(settings, monitor)])
        if monitors
        else dg.Definitions()
    )
    return dg.Definitions.merge(
        dg.Definitions(assets=[preflight_asset(settings)]),
        *pairs.values(),
        report,
        automation,
        dg.Definitions(
            resources=build_resources(settings),
            jobs=[prepare_schema_job(settings), *build_jobs(pairs, bool(verified)), rollback_job(settings)],
            executor=executor(engine),
        ),
    )


defs = build_definitions()
