"""Evaluation: the numbers against an independent NumPy computation, the threshold sweep, the confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CONFIG, TINY_RUN
from unet import runs
from unet.config import Config
from unet.dataset import Dataset
from unet.evaluation import SWEEP, evaluate, evaluate_detailed, sweep_counts
from unet.inference import Predictor


@pytest.fixture(scope="module")
def run_dir(trained_workspace: Path) -> Path:
    return trained_workspace / "runs" / TINY_RUN


@pytest.fixture(scope="module")
def data(run_dir: Path) -> Path:
    return run_dir / runs.DATA  # the raw demo folder, stored inside the run by `train`


@pytest.fixture(scope="module")
def binary(run_dir: Path, data: Path):
    return evaluate_detailed(run_dir, data, split="all")


@pytest.fixture(scope="module")
def probabilities(run_dir: Path, data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, foreground probability, truth) per image, predicted as the Inference page predicts."""
    predictor, dataset = Predictor.from_run(run_dir), Dataset.load(data)
    out = []
    for stem in dataset.stems:
        image, truth = dataset.read_pair(stem)
        out.append((stem, predictor.predict(image).probabilities[..., 0], truth))
    return out


def _dice_iou(truth: np.ndarray, predicted: np.ndarray) -> tuple[float | None, float | None]:
    """None when the class is in neither mask: it is not scored."""
    both, either = np.logical_and(truth, predicted).sum(), np.logical_or(truth, predicted).sum()
    total = truth.sum() + predicted.sum()
    return (2 * both / total if total else None), (both / either if either else None)


def test_scores_match_an_independent_numpy_computation(binary, probabilities):
    truth = np.concatenate([t.ravel() == 1 for _, _, t in probabilities])
    predicted = np.concatenate([p.ravel() > 0.5 for _, p, _ in probabilities])
    dice, iou = _dice_iou(truth, predicted)
    assert binary.dice == pytest.approx(dice, abs=1e-9) and binary.iou == pytest.approx(iou, abs=1e-9)
    assert binary.pixel_accuracy == pytest.approx((truth == predicted).mean(), abs=1e-9)
    assert binary.per_class[1]["dice"] == pytest.approx(dice, abs=1e-9)
    background, _ = _dice_iou(~truth, ~predicted)
    assert binary.per_class[0]["dice"] == pytest.approx(background, abs=1e-9)
    assert binary.averaged_over == ["foreground"]
    by_image = {row["image"]: row for row in binary.per_image}
    for stem, p, t in probabilities:
        image_dice, image_iou = _dice_iou(t == 1, p > 0.5)
        assert by_image[stem]["dice"] == pytest.approx(image_dice, abs=1e-9)
        assert by_image[stem]["iou"] == pytest.approx(image_iou, abs=1e-9)


def test_the_baseline_is_the_majority_class_everywhere(binary, probabilities):
    truth = np.concatenate([t.ravel() == 1 for _, _, t in probabilities])
    majority_is_foreground = truth.mean() > 0.5
    baseline = binary.baseline
    assert baseline["predicts"] == ("foreground" if majority_is_foreground else "background")
    expected, _ = _dice_iou(truth, np.full(truth.shape, majority_is_foreground))
    assert (baseline["dice"] or 0.0) == pytest.approx(expected or 0.0, abs=1e-9)
    assert baseline["pixel_accuracy"] == pytest.approx(max(truth.mean(), 1 - truth.mean()), abs=1e-9)


def test_images_are_listed_worst_first_with_error_pictures(binary, data):
    dices = [row["dice"] for row in binary.per_image]
    assert dices == sorted(dices) and binary.images == len(Dataset.load(data).stems)
    assert [g.image for g in binary.worst] == [row["image"] for row in binary.per_image][: len(binary.worst)]
    assert all(g.picture.dtype == np.uint8 and g.picture.shape[2] == 3 for g in binary.worst)


def test_the_sweep_matches_numpy_and_its_best_threshold_gives_the_max_dice(binary, probabilities):
    assert [s["threshold"] for s in binary.sweep] == pytest.approx(list(SWEEP))
    assert SWEEP[0] == pytest.approx(0.05) and SWEEP[-1] == pytest.approx(0.95)
    truth = np.concatenate([t.ravel() == 1 for _, _, t in probabilities])
    probs = np.concatenate([p.ravel() for _, p, _ in probabilities])
    for row in binary.sweep:
        assert row["dice"] == pytest.approx(_dice_iou(truth, probs > row["threshold"])[0], abs=1e-9)
    best = max(row["dice"] for row in binary.sweep)
    chosen = next(row for row in binary.sweep if row["threshold"] == binary.best_threshold)
    assert chosen["dice"] == pytest.approx(best)
    at_half = next(row for row in binary.sweep if row["threshold"] == 0.5)
    assert at_half["dice"] == pytest.approx(binary.dice)


def test_sweep_counts_follow_the_strictly_greater_rule():
    p = np.array([0.05, 0.1, 0.5, 0.51, 0.95, 1.0], np.float32)
    truth = np.array([1, 0, 1, 0, 1, 1])
    counts = sweep_counts(p, truth, SWEEP)
    for t, (tp, fp, fn) in zip(SWEEP, counts, strict=True):
        predicted = p > np.float32(t)
        assert (tp, fp, fn) == ((predicted & (truth == 1)).sum(), (predicted & (truth == 0)).sum(),
                                (~predicted & (truth == 1)).sum())


def test_evaluate_keeps_the_json_contract(run_dir, data, binary):
    result = evaluate(run_dir, data, split="all")
    json.dumps(result, allow_nan=False)
    assert set(result) >= {"dice", "iou", "pixel_accuracy", "per_class", "images", "per_image", "best_threshold",
                           "averaged_over", "baseline", "split"}
    assert [c["class"] for c in result["per_class"]] == [0, 1]
    assert set(result["per_class"][1]) >= {"name", "value", "dice", "iou", "support_pixels"}
    assert result["dice"] == pytest.approx(binary.dice) and result["best_threshold"] == binary.best_threshold


def test_the_run_s_own_data_is_scored_on_its_held_back_images_by_default(run_dir, data):
    recorded = json.loads((run_dir / runs.TRAINING_DATA).read_text())
    result = evaluate(run_dir, data)
    assert result["split"] == "val" and sorted(r["image"] for r in result["per_image"]) == sorted(recorded["val"])
    assert evaluate(run_dir)["split"] == "val"
    trained_on = evaluate(run_dir, split="train")
    assert sorted(r["image"] for r in trained_on["per_image"]) == sorted(recorded["train"])


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run folder holding an untrained 4-class model on the 'shapes' demo data (no training needed)."""
    from unet import pipeline
    from unet.demo import write_demo_dataset
    from unet.model import build_unet

    root = tmp_path_factory.mktemp("shapes")
    dataset = pipeline.open_dataset(write_demo_dataset(root / "raw", kind="shapes", count=4, size=40), root / "stored")
    raw = json.loads(json.dumps(TINY_CONFIG))
    raw["data"]["channels"], raw["model"]["num_classes"] = dataset.channels, dataset.num_classes
    config = Config.from_dict(raw)
    run = root / "run"
    run.mkdir()
    (run / runs.CONFIG).write_text(config.to_json())
    runs.write_json_atomic(run / runs.TRAINING_DATA, {
        "name": dataset.name, "path": str(dataset.root), "channels": dataset.channels, "mean": dataset.mean,
        "std": dataset.std, "classes": [{"index": c.index, "name": c.name, "color": list(c.color)}
                                        for c in dataset.classes],
        "train": dataset.stems[:3], "val": dataset.stems[3:],
    })
    build_unet(config).save(run / runs.BEST_MODEL)
    return run, dataset.root


def test_multi_class_confusion_matrix_sums_to_the_pixel_count(shapes_run):
    run, data = shapes_run
    result = evaluate_detailed(run, data)
    dataset = Dataset.load(data)
    truths = [dataset.read_pair(s)[1] for s in dataset.stems]
    k = dataset.num_classes
    assert k > 2 and result.confusion.shape == (k, k)
    assert result.confusion.sum() == sum(t.size for t in truths)
    true_pixels = np.bincount(np.concatenate([t.ravel() for t in truths]), minlength=k)
    assert result.confusion.sum(axis=1).tolist() == true_pixels.tolist()
    assert result.pixel_accuracy == pytest.approx(np.trace(result.confusion) / result.confusion.sum())
    assert result.sweep == [] and result.best_threshold is None
    assert [c["class"] for c in result.per_class] == list(range(k))
