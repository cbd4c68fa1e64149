"""User names never become paths outside the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet import workspace


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/abs/path", "..", ".", "", "a/b\\c", "CON", "名前", "   ", "x" * 500, "\x00evil"]
)
def test_any_name_stays_inside_the_parent(tmp_path: Path, name: str):
    path = workspace.child(tmp_path, name)
    assert path.parent == tmp_path.resolve()
    assert path.name not in ("", ".", "..")
    assert len(path.name) <= 64


def test_readable_names_survive():
    assert workspace.safe_name("Zellkerne Ä-2024") == "Zellkerne_A-2024"
    assert workspace.safe_name("demo-cells") == "demo-cells"


def test_workspace_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("UNET_WORKSPACE", str(tmp_path / "ws"))
    assert workspace.datasets_dir() == (tmp_path / "ws" / "datasets").resolve()
    assert workspace.runs_dir().is_dir()
