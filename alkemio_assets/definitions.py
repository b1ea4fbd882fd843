"""The single entry point named by workspace.yaml."""

from __future__ import annotations

import dagster as dg

from alkemio_assets.assets import build_pair_definitions
from alkemio_assets.settings import Settings, load_settings
from resources import MySQLResource, PostgresResource


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


def build_jobs(pairs: dict[str, dg.Definitions]) -> list[dg.UnresolvedAssetJobDefinition]:
    catalogs = [
        a for d in pairs.values() for a in (d.assets or []) if isinstance(a, dg.AssetsDefinition) and len(a.keys) == 1
    ]
    jobs = [
        dg.define_asset_job(
            "refresh_catalog",
            selection=dg.AssetSelection.assets(*catalogs),
            description="Re-read both schemas of every database pair into the catalog snapshots.",
        )
    ]
    tables: dict[str, list[dg.AssetKey]] = {}
    for name, d in pairs.items():
        tables[name] = [
            k for a in (d.assets or []) if isinstance(a, dg.AssetsDefinition) and len(a.keys) > 1 for k in a.keys
        ]
    for name, keys in tables.items():
        if keys:
            jobs.append(
                dg.define_asset_job(
                    f"migrate_{name}",
                    selection=dg.AssetSelection.assets(*keys),
                    description=f"Export, stage and load every table of {name}.",
                    tags={"alkemio/target": name},
                )
            )
    everything = [k for keys in tables.values() for k in keys]
    if everything:
        jobs.append(
            dg.define_asset_job(
                "migrate_all",
                selection=dg.AssetSelection.assets(*everything),
                description="Export, stage and load every table of every database pair.",
            )
        )
    return jobs


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    pairs = {pair.name: build_pair_definitions(pair, settings) for pair in settings.pairs}
    return dg.Definitions.merge(
        *pairs.values(),
        dg.Definitions(resources=build_resources(settings), jobs=build_jobs(pairs)),
    )


defs = build_definitions()
