"""The monitoring schedule's ticks: nothing before a cut-over, a run every tick for the
configured hours after it, then the window's end recorded once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from alkemio_assets.core.settings import Settings
from alkemio_assets.operations.monitor import monitoring_tick
from alkemio_assets.stages.run_log import read_events, record, run_log_path


def test_the_schedule_monitors_for_the_hours_after_the_latest_cutover_and_then_says_it_ended(
    settings: Settings, tmp_path: Path
):
    mine = replace(settings, workdir=tmp_path, monitor_hours=48)
    now = datetime.now(UTC)
    before = monitoring_tick(mine, now)
    assert isinstance(before, dg.SkipReason) and "no cut-over in the run log" in (before.skip_message or "")

    log = run_log_path(mine)
    record(log, "failed", "cut-over refused, ...", "run-1", action="cutover")  # a refusal starts nothing
    assert isinstance(monitoring_tick(mine, now), dg.SkipReason)
    record(log, "completed", "cut-over: settings in ...", "run-1", action="cutover")
    inside = monitoring_tick(mine, now + timedelta(hours=47))
    assert isinstance(inside, dg.RunRequest) and inside.tags["alkemio/monitors"] == "run-1"

    record(log, "failed", "monitor: alkemio: ...", "run-1", "alkemio", action="monitor")
    after = monitoring_tick(mine, now + timedelta(hours=49))
    assert isinstance(after, dg.SkipReason) and "monitoring ended at" in (after.skip_message or "")
    monitoring_tick(mine, now + timedelta(hours=50))  # a later tick records nothing more
    ended = [e for e in read_events(log, "run-1", action="monitor") if e.status == "completed"]
    assert (
        len(ended) == 1
        and ended[0].message == "monitoring ended: 48 hours after the cut-over, 1 evaluations, 1 with a failure"
    )
