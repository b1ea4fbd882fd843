"""How the fixture's Kratos schema is chosen from Kratos's migration files: popx's rules."""

from __future__ import annotations

from fixtures.regenerate import popx

FILES = [
    "sql/20150100000001000000_networks.postgres.up.sql",
    "sql/20150100000001000000_networks.mysql.up.sql",
    "sql/20150100000001000000_networks.mysql.down.sql",
    "sql/20220420102701000000_identity_metadata.up.sql",  # generic: every dialect
    "sql/20220420102701000000_identity_metadata.down.sql",
    "sql/20210410175418000000_testdata.sql",
    "sql/20191100000001000000_identities.mysql.up.sql",
    "sql/20191100000001000000_identities.up.sql",  # generic, but mysql has its own
    "sql/20191100000001000000_identities.cockroach.up.sql",
    "sql/README.md",
]


def test_a_dialects_own_file_wins_over_the_generic_one_and_versions_ascend():
    chosen = popx.up_migrations(FILES, "mysql")
    assert [(m.version, m.dialect) for m in chosen] == [
        ("20150100000001000000", "mysql"),
        ("20191100000001000000", "mysql"),
        ("20220420102701000000", "all"),
    ]


def test_the_generic_file_serves_a_dialect_without_its_own():
    chosen = popx.up_migrations(FILES, "postgres")
    assert [(m.version, m.dialect) for m in chosen] == [
        ("20150100000001000000", "postgres"),
        ("20191100000001000000", "all"),
        ("20220420102701000000", "all"),
    ]


def test_a_file_of_comments_and_blank_lines_runs_nothing():
    assert popx.is_empty("-- nothing to do on this dialect\n\n   \n")
    assert not popx.is_empty("-- a comment\nCREATE INDEX i ON t (c);\n")
