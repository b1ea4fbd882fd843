"""The kinds of migration ledger the applications keep, and how each names its newest migration
(read by catalog/versions.py; named in migration.toml `versions.kind`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LedgerKind = Literal["typeorm", "popx"]


@dataclass(frozen=True)
class Ledger:
    """How one kind of migration ledger names its newest migration."""

    order: str  # the column that orders the entries
    name: str  # the column that names the migration


LEDGERS: dict[str, Ledger] = {
    # TypeORM: migrations_typeorm(id, timestamp, name), name = ClassName + timestamp
    "typeorm": Ledger(order="timestamp", name="name"),
    # Ory popx: schema_migration(version, version_self), version = 20-digit timestamp
    "popx": Ledger(order="version", name="version"),
}
