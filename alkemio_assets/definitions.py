"""The single entry point named by workspace.yaml."""

from __future__ import annotations

import dagster as dg

from alkemio_assets.catalog_assets import build_catalog_definitions
from alkemio_assets.settings import load_settings
from resources import MySQLResource, PostgresResource


def build_definitions() -> dg.Definitions:
    settings = load_settings()
    resources = {
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
    return dg.Definitions.merge(
        build_catalog_definitions(settings.pairs, settings.catalog_dir),
        dg.Definitions(resources=resources),
    )


defs = build_definitions()
