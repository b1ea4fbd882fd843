"""Configuration: the seed's variable names, both sides at once, clear errors, no secrets kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from alkemio_assets.core.settings import CHUNK_MB, DEFAULT_CONFIG, SettingsError, load_settings

BASE = {
    "DATABASE_TYPE": "postgres",
    "DATABASE_HOST": "pg.internal",
    "DATABASE_PORT": "5433",
    "DATABASE_USERNAME": "alkemio",
    "DATABASE_PASSWORD": "s3cret-target",
    "DATABASE_NAME": "alkemio_pg",
    "MYSQL_ROOT_PASSWORD": "s3cret-source",
    "MYSQL_DATABASE": "alkemio_my",
}


def test_seed_names_configure_both_sides_and_both_pairs():
    s = load_settings(BASE)
    assert (s.target.host, s.target.port, s.target.user) == ("pg.internal", 5433, "alkemio")
    assert (s.source.host, s.source.port, s.source.user) == ("127.0.0.1", 3306, "root")
    alkemio, kratos = s.pair("alkemio"), s.pair("kratos")
    assert (alkemio.source_database, alkemio.target_database) == ("alkemio_my", "alkemio_pg")
    assert (kratos.source_database, kratos.target_database) == ("kratos", "kratos")
    assert s.source.password(BASE) == "s3cret-source"
    assert s.target.password(BASE) == "s3cret-target"


def test_kratos_names_are_overridable():
    s = load_settings({**BASE, "KRATOS_MYSQL_DATABASE": "ory_kratos", "KRATOS_DATABASE_NAME": "kratos_pg"})
    assert (s.pair("kratos").source_database, s.pair("kratos").target_database) == ("ory_kratos", "kratos_pg")


def test_parallelism_is_configuration():
    default = load_settings(BASE)
    assert (default.workers, default.shards, default.chunk_bytes) == (4, 1, CHUNK_MB * 1_000_000)
    s = load_settings({**BASE, "MIGRATION_WORKERS": "2", "MIGRATION_SHARDS": "3", "MIGRATION_CHUNK_MB": "0"})
    assert (s.workers, s.shards, s.chunk_bytes) == (2, 3, 0)


def test_memory_per_batch_is_configuration():
    default = load_settings(BASE)
    assert (default.batch_bytes, default.staging_memory_mb, default.fetch.budget) == (16_000_000, 1_000, 16_000_000)
    s = load_settings({**BASE, "MIGRATION_BATCH_MB": "4", "MIGRATION_STAGING_MB": "300"})
    assert (s.fetch.budget, s.staging_memory_mb) == (4_000_000, 300)


def test_settings_hold_no_secret():
    s = load_settings(BASE)
    assert "s3cret" not in repr(s)
    assert s.source.password_env == "MYSQL_ROOT_PASSWORD"
    assert load_settings({**BASE, "MYSQL_PASSWORD": "x"}).source.password_env == "MYSQL_PASSWORD"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DATABASE_TYPE": "mysql"}, "DATABASE_TYPE=mysql describes the legacy source"),
        ({"DATABASE_TYPE": "oracle"}, "DATABASE_TYPE='oracle': expected 'postgres'"),
        ({"DATABASE_PORT": "54x2"}, "DATABASE_PORT='54x2' is not a TCP port"),
        ({"MYSQL_PORT": "70000"}, "MYSQL_PORT='70000' is not a TCP port"),
        ({"DATABASE_PASSWORD": None}, "DATABASE_PASSWORD is not set"),
        ({"MYSQL_ROOT_PASSWORD": None}, "MYSQL_ROOT_PASSWORD is not set"),
        ({"MIGRATION_WORKERS": "0"}, "MIGRATION_WORKERS='0' is not a positive number of parallel tables"),
        ({"MIGRATION_SHARDS": "two"}, "MIGRATION_SHARDS='two' is not a positive number of steps"),
        ({"MIGRATION_CHUNK_MB": "-1"}, "MIGRATION_CHUNK_MB='-1' is not a whole (at least 0) number of MB"),
        ({"MIGRATION_BATCH_MB": "0"}, "MIGRATION_BATCH_MB='0' is not a positive number of MB"),
        ({"MIGRATION_STAGING_MB": "50"}, "MIGRATION_STAGING_MB='50' is not a whole (at least 100) number of MB"),
    ],
)
def test_bad_configuration_is_named(change: dict[str, str | None], message: str):
    env = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as err:
        load_settings({"DATABASE_PORT": "x", "MYSQL_PORT": "y"})
    text = str(err.value)
    for name in ("DATABASE_PORT", "MYSQL_PORT", "DATABASE_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        assert name in text


def test_a_third_database_is_a_configuration_entry(tmp_path: Path):
    config = tmp_path / "migration.toml"
    config.write_text(
        DEFAULT_CONFIG.read_text() + '\n[databases.hydra]\nsource_database = "hydra"\ntarget_database = "hydra"\n'
    )
    s = load_settings({**BASE, "HYDRA_DATABASE_NAME": "hydra_pg"}, config_path=config)
    assert [p.name for p in s.pairs] == ["alkemio", "kratos", "hydra"]
    assert s.pair("hydra").target_database == "hydra_pg"


def test_exclusions_need_a_reason(tmp_path: Path):
    config = tmp_path / "migration.toml"
    config.write_text('[databases.x]\n[databases.x.exclude]\nsome_table = ""\n')
    with pytest.raises(SettingsError, match=r"databases\.x\.exclude\.some_table needs a reason"):
        load_settings(BASE, config_path=config)


def test_fixture_configuration_excludes_the_schema_tooling_with_reasons():
    s = load_settings(BASE)
    assert set(s.pair("alkemio").exclude) == {"migrations_typeorm", "query-result-cache"}
    assert set(s.pair("kratos").exclude) == {"schema_migration"}
    assert "user" in s.pair("alkemio").critical_tables
