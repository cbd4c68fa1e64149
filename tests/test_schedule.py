"""The learning-rate schedule: warm-up, then a cosine that ends low, driven by steps or by the time limit."""

from __future__ import annotations

import pytest

from unet import schedule


def test_cosine_warms_up_peaks_and_ends_at_the_floor():
    base = 2e-3
    rates = [schedule.cosine_rate(base, p / 100) for p in range(101)]
    assert rates[0] == pytest.approx(base * schedule.WARMUP_START)
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(base, rel=1e-3) and peak / 100 == pytest.approx(schedule.WARMUP, abs=0.011)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1], strict=True))  # rises during warm-up
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:], strict=False))  # then only falls
    assert rates[-1] == pytest.approx(base * schedule.FLOOR)
    assert schedule.cosine_rate(base, 1.7) == pytest.approx(base * schedule.FLOOR)  # past the end it stays low


def test_progress_follows_steps_or_the_time_limit_whichever_is_further():
    assert schedule.run_progress(30, 120) == pytest.approx(0.25)
    assert schedule.run_progress(30, 120, seconds=150, limit_seconds=300) == pytest.approx(0.5)  # time is ahead
    assert schedule.run_progress(90, 120, seconds=30, limit_seconds=300) == pytest.approx(0.75)  # steps are ahead
    assert schedule.run_progress(30, 120, seconds=10_000) == pytest.approx(0.25)  # no limit: time does not count
    assert schedule.run_progress(500, 120) == 1.0 and schedule.run_progress(0, 0) == 0.0
