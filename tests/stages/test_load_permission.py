"""A target user who may not bypass the foreign-key triggers is told so, by its own name, with
the grant that fixes it."""

from __future__ import annotations

import pytest
from psycopg import sql

from alkemio_assets.stages.load import LoadPermissionError, bypass_foreign_keys
from resources import PostgresResource

pytestmark = pytest.mark.e2e


def test_the_missing_grant_names_the_user_it_means(postgres: PostgresResource, unique_name: str):
    if postgres.server_version() < 150000:
        pytest.skip("GRANT SET ON PARAMETER exists from PostgreSQL 15 on")
    role = f"{unique_name}_Loader"  # mixed case: the grant must quote it
    postgres.create_database(unique_name)
    try:
        with postgres.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        loader = PostgresResource(host=postgres.host, port=postgres.port, user=role, password=postgres.password)
        with loader.connect(unique_name) as conn, conn.cursor() as cur, pytest.raises(LoadPermissionError) as raised:
            bypass_foreign_keys(cur)
        message = str(raised.value)
        assert f"the target user '{role}' may not" in message
        assert f'GRANT SET ON PARAMETER session_replication_role TO "{role}"' in message
        with postgres.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(sql.Identifier(role)))
        with loader.connect(unique_name) as conn, conn.cursor() as cur, conn.transaction():
            bypass_foreign_keys(cur)  # granted: no error
    finally:
        postgres.drop_database(unique_name)
        with postgres.connect(autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))  # the parameter's grant
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
