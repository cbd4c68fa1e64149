"""Load: ten sessions use the app while a real trainer trains, and nothing fails.

One trainer process (`python -m unet train`, as the Train page starts it) trains a small model while, for a few
seconds, ten threads act as ten browser tabs at the HTTP level against a real server (`python -m unet.ui.serve`
on a free localhost port) and one session in this process runs the real page scripts (Streamlit AppTest):
Dataset, Model, and the Train page watching the very run that is training. The load is `unet.ui.load_probe`'s,
the one implementation of it. This test checks function only: every request answered, every page viewed without
an error, the trainer alive and finishing epochs throughout, and stopped when asked.

How fast training stays under that load is a figure, not a test: `python -m unet bench` runs the same probe with
22-second idle and busy phases and reports `load_alone_images_per_s`, `load_busy_images_per_s` and `load_ratio`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from unet import runs
from unet.ui import load_probe

PHASE_SECONDS = 6.0
SLOW_REQUEST_SECONDS = 1.0  # a localhost answer on a busy machine takes less than this


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[load_probe.Server, Path]]:
    """The app as `make run` starts it (config.toml's address), on a free port with its own workspace."""
    workspace = tmp_path_factory.mktemp("load-workspace")
    with load_probe.app_server(workspace) as app:
        yield app, workspace


def _outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_server_started_by_default_is_not_reachable_from_the_network(server):
    app, _ = server
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no network address besides localhost")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect((address, app.port))


def test_ten_sessions_use_the_app_while_a_trainer_trains_and_nothing_fails(server, monkeypatch):
    app, workspace = server
    monkeypatch.setenv("UNET_WORKSPACE", str(workspace))
    load_probe.prepare_in_process_sessions()
    run, dataset_root, _ = load_probe.prepare_run(workspace)
    proc = runs.start_training(run.path, dataset_root)
    try:
        load_probe.warm_pages(run.id, workspace)
        load_probe.wait_for_epochs(run, proc, 1)
        before = len(run.read_history())
        load, _ = load_probe.busy_phase(app.url, run, workspace, PHASE_SECONDS)
        after = len(run.read_history())
        assert proc.poll() is None, f"the trainer died under load:\n{load_probe.trainer_log_tail(run)}"
    finally:
        load_probe.stop_training(run, proc)

    assert load.failures == []
    assert set(load.requests) == set(load_probe.PATHS), load.requests
    # Each tab asks again THINK_SECONDS after an answer, so it makes at least this many requests in the phase.
    at_least = load_probe.SESSIONS * int(PHASE_SECONDS / (load_probe.THINK_SECONDS + SLOW_REQUEST_SECONDS))
    assert load.total_requests >= at_least, load.requests
    assert all(load.page_views.get(page, 0) >= 1 for page in load_probe.PAGES), load.page_views
    assert after > before, "the trainer finished no epoch while the app was in use"
    assert run.read_status()["state"] == runs.STOPPED
