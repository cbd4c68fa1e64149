"""Fixtures shared by the page tests: a workspace holding one real (tiny) run trained by the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = {
    "data": {"input_size": 32},
    "augment": {"enabled": False},
    "model": {"depth": 2, "base_filters": 4},
    "train": {"epochs": 2, "batch_size": 4},
}
TINY_RUN = "20260101-000000-tiny"


# The slowest modules, slowest first (pytest's --durations on this 2-core machine): `make test`'s two workers take
# them first, so the suite does not end with one worker on a long test while the other waits.
SLOWEST_FIRST = (
    "tests/e2e/test_cluster_train_page.py", "tests/e2e/test_train_page.py", "tests/test_bench.py",
    "tests/test_instance_task.py", "tests/e2e/test_objects_page.py", "tests/e2e/test_second_journey.py",
    "tests/test_annotation_loop.py", "tests/test_faults.py", "tests/test_class_values.py",
    "tests/e2e/test_right_by_default.py", "tests/test_honest_figures.py", "tests/test_suggest.py",
    "tests/test_clean_cwd.py", "tests/test_training.py", "tests/test_ray_backend.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest modules first (stable: each module keeps its order); see `_OneModulePerWorker`."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


class _OneModulePerWorker:
    """`make test` runs the suite on two workers (pytest-xdist): each module whole on one worker, so its module
    fixtures (a trained run, a Ray cluster) are built once, handed out in the order above."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
        from xdist.scheduler import LoadScopeScheduling

        class ModulesInOrder(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return nodeid.split("::", 1)[0]

        return ModulesInOrder(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):  # its hooks are known only when it is loaded
        config.pluginmanager.register(_OneModulePerWorker(), "one-module-per-worker")


@pytest.fixture(scope="session", autouse=True)
def _scan_installed_components_once() -> None:
    """Streamlit's AppTest scans every installed package's metadata for custom components on each new app
    (about 0.3 s, 700 packages here); the packages do not change during a test session, so scan once."""
    import functools

    from streamlit.components.v2 import manifest_scanner

    manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)


@pytest.fixture(scope="session", autouse=True)
def _reruns_as_served() -> None:
    """Page tests run the app as `unet.ui.serve` serves it: without Streamlit's full garbage collections per run."""
    from unet.ui.serve import lighten_reruns

    lighten_reruns()


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with runs/TINY_RUN: two epochs on 8 demo cells at 32x32, through `python -m unet train`."""
    from unet.demo import write_demo_dataset

    workspace = tmp_path_factory.mktemp("trained-workspace")
    data = write_demo_dataset(tmp_path_factory.mktemp("data") / "cells", kind="cells", count=8, size=48)
    config = workspace / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    done = subprocess.run(
        [sys.executable, "-m", "unet", "train", "--data", str(data), "--out", str(workspace / "runs" / TINY_RUN),
         "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return workspace


def open_page(page: str, workspace: Path, monkeypatch: pytest.MonkeyPatch, **query: str):
    """The app in Streamlit's AppTest, on `page` (e.g. "pages/runs.py"), with `workspace` as its workspace."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("UNET_WORKSPACE", str(workspace))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in query.items():
        app.query_params[key] = value
    app.switch_page(page).run()
    assert not app.exception
    return app
