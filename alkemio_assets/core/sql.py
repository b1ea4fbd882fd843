"""Identifier quoting for the two dialects, and splitting of schema scripts."""

from __future__ import annotations

from typing import Any

from psycopg import sql


def mysql_ident(name: str) -> str:
    """Quote a MySQL identifier with backticks (a backtick inside is doubled)."""
    if "\x00" in name:
        raise ValueError(f"identifier {name!r} contains NUL")
    return "`" + name.replace("`", "``") + "`"


def pg_ident(*names: str) -> sql.Identifier:
    """Quote a (possibly qualified) PostgreSQL identifier."""
    return sql.Identifier(*names)


def split_script(text: str) -> list[str]:
    """Split a schema script into statements at semicolons that end a line.

    The fixture scripts keep one statement per `;`-terminated block and no semicolon at the
    end of a line inside a string, which is all this needs to handle.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def first(cursor: Any) -> Any:
    """The first column of the one row a query returns."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("a query that returns one row returned none")
    return row[0]
