"""The run's manifest when a database's tables are split over several steps: each step writes
what it did, and the file gathers every step's tables under one run."""

from __future__ import annotations

import json
from pathlib import Path

from alkemio_assets.stages.manifest import MANIFEST, Manifest, merged_manifest


def _step(run_id: str, started: str, finished: str, outcome: str = "succeeded", error: str | None = None) -> Manifest:
    return Manifest(
        run_id=run_id,
        database="alkemio",
        source="mysql://root@db:3306/alkemio",
        target="postgresql://postgres@pg:5432/alkemio",
        started_at=started,
        finished_at=finished,
        outcome=outcome,
        error=error,
    )


def test_steps_of_one_run_gather_their_tables(tmp_path: Path):
    path = tmp_path / MANIFEST
    first = _step("run-1", "2026-11-30T10:00:05+00:00", "2026-11-30T10:00:40+00:00")
    first.record("user", rows=10, file="csv/user.csv")
    first.span("user", "export", 1.0)
    second = _step("run-1", "2026-11-30T10:00:01+00:00", "2026-11-30T10:00:30+00:00")
    second.record("profile", rows=7)
    second.record("user", loaded_rows=10)  # a step split by Dagster: the load ran in another step
    second.span("user", "load", 2.0)
    first.write(path)
    second.write(path)
    body = json.loads(path.read_text())
    assert set(body["tables"]) == {"user", "profile"}
    assert body["tables"]["user"]["rows"] == body["tables"]["user"]["loaded_rows"] == 10
    assert set(body["tables"]["user"]["spans"]) == {"export", "load"}
    assert body["started_at"] == "2026-11-30T10:00:01+00:00"
    assert body["finished_at"] == "2026-11-30T10:00:40+00:00"
    assert (body["outcome"], body["error"]) == ("succeeded", None)


def test_a_failed_step_fails_the_run_whatever_comes_after():
    earlier = _step("run-1", "a", "b", "failed", "alkemio.user row 3 column email: NULL").__dict__
    later = _step("run-1", "a", "c", "succeeded").__dict__
    merged = merged_manifest(earlier, later)
    assert merged["outcome"] == "failed"
    assert merged["error"] == "alkemio.user row 3 column email: NULL"
    both = merged_manifest(merged, _step("run-1", "a", "d", "failed", "kratos.identities: timeout").__dict__)
    assert both["error"] == "alkemio.user row 3 column email: NULL\nkratos.identities: timeout"


def test_a_new_run_starts_a_new_manifest(tmp_path: Path):
    path = tmp_path / MANIFEST
    old = _step("run-1", "a", "b")
    old.record("user", rows=1)
    old.write(path)
    new = _step("run-2", "c", "d")
    new.record("profile", rows=2)
    new.write(path)
    body = json.loads(path.read_text())
    assert (body["run_id"], set(body["tables"])) == ("run-2", {"profile"})
