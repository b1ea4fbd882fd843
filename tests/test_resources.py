"""The connections every stage takes: what they cost and what they keep."""

from __future__ import annotations

from resources import MySQLResource


def test_mysql_connections_share_one_tls_context_made_once(mysql: MySQLResource) -> None:
    # PyMySQL's default (TLS when the server offers it) built its context, the system's CA bundle
    # loaded, for every connection; the table checks open several per table
    with mysql.connect() as first, mysql.connect() as second:
        assert first.ctx is not None and first.ctx is second.ctx
        with second.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == {"one": 1}
