"""The benchmark runs end to end on a tiny setting and reports every figure as a number.

Never a threshold: the benchmark reports how fast this machine is, it does not judge it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from unet import bench
from unet.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _cli_has_bench() -> bool:
    try:
        build_parser().parse_args(["bench", "--json", "--tiny"])
    except SystemExit:
        return False
    return True


def _tiny_result(cwd: Path) -> dict:
    """`python -m unet bench --json --tiny`, run from `cwd` as a user would (no workspace set)."""
    env = {key: value for key, value in os.environ.items() if key not in ("UNET_WORKSPACE", "UNET_RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "unet", "bench", "--json", "--tiny"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_tiny_bench_reports_every_figure_as_a_finite_number_and_prints_a_table(tmp_path):
    assert _cli_has_bench()
    result = _tiny_result(tmp_path)
    assert not list(tmp_path.iterdir()), "bench left files in the directory it ran from (issue #24)"
    assert json.loads(json.dumps(result)) == result  # one JSON object
    for key in bench.NUMERIC_KEYS:
        value = result.get(key)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value), key
    assert result["machine"]["cpus"] >= 1 and result["machine"]["tensorflow"]
    assert len(result["load_average"]) == 3 and result["model"]
    table = bench.format_table(result)
    for label in ("bare model.fit", "product training", "predict 512x512", "trainer peak memory"):
        assert label in table


def test_quality_is_skipped_with_a_message_when_the_isbi_folder_is_missing(tmp_path):
    said: list[str] = []
    result = bench.isbi_quality(tmp_path / "nowhere", tmp_path, 0.1, said.append)
    assert result["isbi_dice_5min"] is None and "skipped" in result["isbi_note"] and said
    assert "isbi_dice_5min" in bench.format_table(result) or "skipped" in bench.format_table(result)
