"""Catalog snapshots on disk, so that loading the definitions never needs a database server.

One file per database pair: the source catalog (MySQL information_schema) and the target
catalog (PostgreSQL, made by the applications' migrations), with when and whence they came.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alkemio_assets.catalog.source import Catalog
from alkemio_assets.catalog.target import TargetCatalog

STALE_AFTER = timedelta(days=7)


class CatalogSnapshotWarning(UserWarning):
    """The snapshot the definitions are built from is missing or old: refresh it."""


@dataclass(frozen=True)
class Snapshot:
    source: Catalog
    target: TargetCatalog
    taken_at: datetime
    described: str  # the two servers, without secrets
    sizes: Mapping[str, int] = field(default_factory=dict)  # source bytes per table: shards, key ranges

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.taken_at


def snapshot_path(name: str, directory: Path) -> Path:
    return directory / f"{name}.json"


def write_snapshot(
    name: str,
    source: Catalog,
    target: TargetCatalog,
    described: str,
    directory: Path,
    sizes: Mapping[str, int] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(name, directory)
    body = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "described": described,
        "source": json.loads(source.to_json()),
        "target": json.loads(target.to_json()),
        "sizes": dict(sizes or {}),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_snapshot(name: str, directory: Path, *, warn: bool = True) -> Snapshot | None:
    """The snapshot for database `name`, or None (with a warning) when there is none;
    a warning too when it is older than STALE_AFTER."""
    path = snapshot_path(name, directory)
    if not path.exists():
        if warn:
            warnings.warn(
                f"no catalog snapshot for {name!r} at {path}: its tables are not in the asset graph yet. "
                f"Run the job refresh_catalog (or materialize {name}/source_catalog) to take one.",
                CatalogSnapshotWarning,
                stacklevel=2,
            )
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    snapshot = Snapshot(
        source=Catalog.from_json(json.dumps(body["source"])),
        target=TargetCatalog.from_json(json.dumps(body["target"])),
        taken_at=datetime.fromisoformat(body["taken_at"]),
        described=body["described"],
        sizes=body.get("sizes", {}),
    )
    if warn and snapshot.age() > STALE_AFTER:
        warnings.warn(
            f"catalog snapshot for {name!r} was taken {snapshot.taken_at:%Y-%m-%d %H:%M} UTC from "
            f"{snapshot.described}, more than {STALE_AFTER.days} days ago: run refresh_catalog before a "
            "migration so the graph matches the live schemas (a run also refuses a schema that changed).",
            CatalogSnapshotWarning,
            stacklevel=2,
        )
    return snapshot
