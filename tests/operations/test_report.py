"""The report, alone, from a run folder: every database's manifest and recorded checks gathered,
a failed ERROR check named (a failed WARN check is not a refusal), and the manual checklist."""

from __future__ import annotations

import json
from pathlib import Path

from alkemio_assets.operations.report import MANUAL_CHECKLIST, failed_errors, gather, render
from alkemio_assets.operations.verified import VERIFICATION


def _database(folder: Path, name: str, checks: dict, database_checks: dict) -> None:
    (folder / name).mkdir(parents=True)
    manifest = {
        "database": name,
        "outcome": "succeeded",
        "versions": None,
        "source": f"mysql/{name}",
        "target": f"postgres/{name}",
        "tables": {"user": {"rows": 3, "loaded_rows": 3, "load": "loaded", "checks": checks}},
    }
    (folder / name / "migration_manifest.json").write_text(json.dumps(manifest))
    (folder / name / VERIFICATION).write_text(json.dumps(database_checks))


def test_a_failed_error_check_is_named_and_a_failed_warning_is_not(tmp_path: Path):
    _database(
        tmp_path,
        "alkemio",
        {"row_count": {"passed": True, "severity": "ERROR"}, "indexes": {"passed": False, "severity": "WARN"}},
        {"encoding": {"passed": True, "severity": "ERROR"}},
    )
    _database(
        tmp_path,
        "kratos",
        {"content_fingerprint": {"passed": False, "severity": "ERROR"}},
        {"kratos_network": {"passed": False, "severity": "ERROR"}},
    )
    databases = gather(tmp_path)
    assert sorted(databases) == ["alkemio", "kratos"]
    assert databases["alkemio"]["tables"]["user"]["rows"] == 3
    assert failed_errors(databases) == ["kratos.user: content_fingerprint", "kratos: kratos_network"]

    text = render(databases, "run-1")
    assert text.startswith("# Migration report, run run-1")
    assert "| user | 3 | 3 | loaded | indexes (WARN) |" in text
    assert "kratos_network FAILED (ERROR)" in text
    assert all(f"- [ ] {item}" in text for items in MANUAL_CHECKLIST.values() for item in items)
