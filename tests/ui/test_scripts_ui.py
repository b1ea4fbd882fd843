"""scripts/ui started in the background stops on SIGTERM, as a newcomer stops it with `kill PID`.

A shell without job control starts a background command with SIGINT ignored, and `dagster dev`
answers SIGTERM with what SIGINT does; the script puts SIGINT's handler back. The test runs the
script itself from a checkout of its own (the repository's files linked, a `.env` naming a
storage database of the test's own), with SIGINT ignored as such a shell leaves it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess

import pytest
from conftest import Checkout
from test_browser import _wait_until_serving

pytestmark = pytest.mark.e2e


def _serving(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_scripts_ui_in_the_background_stops_on_sigterm(checkout: Checkout) -> None:
    root, port = checkout.root, checkout.port
    log = root / "ui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(root / "scripts" / "ui")],
            cwd=root,
            env={k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MIGRATION_"))},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # what a shell without job control does to a command started with `&`
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}", process, log)
        process.send_signal(signal.SIGTERM)  # `kill PID`
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"scripts/ui still runs 30 s after SIGTERM:\n{log.read_text()[-2000:]}")
        assert not _serving(port), "the webserver still answers after its process ended"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the code servers, had their heartbeat not lapsed yet
        process.wait()
