"""Catalog snapshots on disk, so that loading the definitions never needs the source server."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alkemio_assets.catalog import Catalog

STALE_AFTER = timedelta(days=7)


class CatalogSnapshotWarning(UserWarning):
    """The snapshot the definitions are built from is missing or old: refresh it."""


@dataclass(frozen=True)
class Snapshot:
    catalog: Catalog
    taken_at: datetime
    source: str  # server described without secrets

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.taken_at


def snapshot_path(name: str, directory: Path) -> Path:
    return directory / f"{name}.json"


def write_snapshot(name: str, catalog: Catalog, source: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(name, directory)
    body = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "catalog": json.loads(catalog.to_json()),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_snapshot(name: str, directory: Path) -> Snapshot | None:
    """The snapshot for database `name`, or None (with a warning) when there is none;
    a warning too when it is older than STALE_AFTER."""
    path = snapshot_path(name, directory)
    if not path.exists():
        warnings.warn(
            f"no catalog snapshot for {name!r} at {path}: its tables are not in the asset graph. "
            f"Materialize {name}/source_catalog (job refresh_catalog) to take one.",
            CatalogSnapshotWarning,
            stacklevel=2,
        )
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    snapshot = Snapshot(
        catalog=Catalog.from_json(json.dumps(body["catalog"])),
        taken_at=datetime.fromisoformat(body["taken_at"]),
        source=body["source"],
    )
    if snapshot.age() > STALE_AFTER:
        warnings.warn(
            f"catalog snapshot for {name!r} was taken {snapshot.taken_at:%Y-%m-%d %H:%M} UTC from "
            f"{snapshot.source}, more than {STALE_AFTER.days} days ago: refresh it before a migration "
            f"(job refresh_catalog) so the graph matches the live schema.",
            CatalogSnapshotWarning,
            stacklevel=2,
        )
    return snapshot
