"""examples/compose: the seed's servers for those who have Docker. No Docker engine here, so the
file is held to its shape: the versions the seed names, MySQL on its default authentication,
the four target databases, and no password written into it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from alkemio_assets.core.settings import REPO_ROOT

COMPOSE = REPO_ROOT / "examples" / "compose"


def _compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))


def _created(path: Path) -> set[str]:
    return set(re.findall(r"CREATE DATABASE (?:IF NOT EXISTS )?(\w+)", path.read_text(encoding="utf-8")))


def _mounted(service: dict) -> list[Path]:
    """The init scripts a service mounts, as files beside the compose file."""
    return [
        COMPOSE / volume.split(":")[0]
        for volume in service["volumes"]
        if volume.startswith("./") and "/docker-entrypoint-initdb.d/" in volume
    ]


def test_mysql_8_on_its_default_caching_sha2_password_with_both_source_databases() -> None:
    mysql = _compose()["services"]["mysql"]
    assert re.fullmatch(r"mysql:8(\.\d+)*", mysql["image"])
    assert "mysql_native_password" not in yaml.safe_dump(_compose())  # (the comments name it, to say why not)
    assert "command" not in mysql  # no --default-authentication-plugin: the plugin stays caching_sha2_password
    created = {mysql["environment"]["MYSQL_DATABASE"]} | {db for f in _mounted(mysql) for db in _created(f)}
    assert created == {"alkemio", "kratos"}


def test_postgresql_17_5_with_the_four_databases_the_seed_names() -> None:
    postgres = _compose()["services"]["postgres"]
    assert postgres["image"] == "postgres:17.5"
    created = {postgres["environment"]["POSTGRES_DB"]} | {db for f in _mounted(postgres) for db in _created(f)}
    assert created == {"alkemio", "kratos", "hydra", "synapse"}


def test_passwords_come_from_the_environment_and_ports_stay_on_loopback() -> None:
    services = _compose()["services"]
    for name, variable in (("mysql", "MYSQL_ROOT_PASSWORD"), ("postgres", "POSTGRES_PASSWORD")):
        service = services[name]
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", service["environment"][variable]), name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
        assert service["healthcheck"]["test"], name
        assert all(path.is_file() for path in _mounted(service)), name
