"""The migration verification checklist as Dagster asset checks, one function per item."""

from __future__ import annotations

from typing import Any

import dagster as dg


def check_result(
    asset_key: dg.AssetKey, name: str, passed: bool, severity: dg.AssetCheckSeverity, **metadata: Any
) -> dg.AssetCheckResult:
    """One check's outcome with its evidence as metadata, for the UI."""
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=name, passed=passed, severity=severity, metadata=metadata
    )
