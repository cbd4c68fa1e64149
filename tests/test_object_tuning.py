"""Object settings chosen, not fixed (issue #26): on hand-made probabilities whose right objects are known, the
fixed 0.5 / 0.8 / 0 miss them and the chosen settings find them; a chosen setting is what `predict` and
`evaluate` then use."""

from __future__ import annotations

import json

import numpy as np

from unet import object_tuning
from unet.inference import Prediction
from unet.object_tuning import ObjectSettings, tune

SIDE = 64


def _two_touching_squares() -> np.ndarray:
    truth = np.zeros((SIDE, SIDE), np.int32)
    truth[10:30, 10:30] = 1
    truth[10:30, 30:50] = 2
    return truth


def _probabilities(truth: np.ndarray, interior_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground 0.9 over the objects; interior `interior_level` inside each object, 0.1 on a 2-px rim."""
    from unet.instances import boundary_targets

    foreground = np.where(truth > 0, 0.9, 0.05).astype(np.float32)
    interior = np.where(boundary_targets(truth) == 1, interior_level, 0.1).astype(np.float32)
    return foreground, interior


def test_a_model_unsure_of_its_interiors_gets_a_lower_seed_level_and_finds_both_objects():
    truth = _two_touching_squares()
    pairs = [(*_probabilities(truth, 0.7), truth) for _ in range(3)]
    settings = tune(pairs, budget_seconds=30)
    assert settings.measured["default_ap50"] == 0.0  # no pixel reaches the fixed seed level 0.8: no object
    assert settings.seed_probability <= 0.7 and settings.measured["ap50"] == 1.0
    labels = Prediction(pairs[0][0][..., None], 2, interior=pairs[0][1],
                        seed_probability=settings.seed_probability).labels(settings.threshold, settings.min_size)
    assert labels.max() == 2  # the two touching squares, apart


def test_specks_are_dropped_by_a_minimum_size_when_that_scores_better():
    truth = _two_touching_squares()
    foreground, interior = _probabilities(truth, 0.95)
    for y, x in ((50, 8), (52, 40), (56, 56)):  # three confident 2x2 specks where there is no object
        foreground[y : y + 2, x : x + 2] = 0.9
        interior[y : y + 2, x : x + 2] = 0.95
    settings = tune([(foreground, interior, truth)], budget_seconds=30)
    assert settings.measured["default_ap50"] == 2 / 5  # 2 matched, 3 false
    assert 4 < settings.min_size <= 400 and settings.measured["ap50"] == 1.0


def test_the_defaults_are_kept_when_nothing_scores_better_and_a_missing_file_reads_as_them(tmp_path):
    truth = _two_touching_squares()
    settings = tune([(*_probabilities(truth, 0.95), truth)], budget_seconds=30)
    assert (settings.threshold, settings.seed_probability, settings.min_size) == (0.5, 0.8, 0)
    assert object_tuning.read(tmp_path) == ObjectSettings() and not object_tuning.read(tmp_path).tuned
    (tmp_path / object_tuning.FILE).write_text("{not json")
    assert object_tuning.read(tmp_path) == ObjectSettings()  # an unreadable file: the defaults, no crash


def test_written_settings_are_read_back_with_what_was_measured(tmp_path):
    truth = _two_touching_squares()
    settings = tune([(*_probabilities(truth, 0.6), truth)], budget_seconds=30)
    object_tuning.write(tmp_path, settings)
    again = object_tuning.read(tmp_path)
    assert again == settings and again.tuned and again.measured == json.loads(
        (tmp_path / object_tuning.FILE).read_text())["measured"]
    assert "chosen on 1 held-back image:" in again.describe()
