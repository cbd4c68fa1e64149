"""The human-in-the-loop cycle a user goes through on images without masks: draw a few, train, let the model fill
the next one and correct it, fine-tune from the first run, and get a better model on images nobody trained on.

Generated data (`unet.demo`), real tiny trainings; the drawings go through `unet.annotation.save_annotation`, the
same call the Annotate page makes for every stroke. Scores are computed here from the masks, independently of the
evaluation code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from unet import annotation, finetune, runs
from unet.config import Config
from unet.demo import write_demo_dataset
from unet.inference import Predictor
from unet.training import train

CONFIG = {"data": {"input_size": 64}, "augment": {"enabled": False}, "model": {"depth": 2, "base_filters": 8},
          "train": {"epochs": 20, "batch_size": 1, "early_stopping_patience": 0, "validation_split": 0.25,
                    "learning_rate": 0.003}}


def _first_loss(run_dir: Path) -> float:
    return runs.Run(run_dir).read_history()[0]["loss"]


def _dice(run_dir: Path, images: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Foreground Dice pooled over the held-back images, counted here from the predicted masks."""
    predictor = Predictor.from_run(run_dir)
    overlap = predicted = true = 0
    for image, truth in zip(images, truths, strict=True):
        mask = predictor.predict(image).mask() > 0
        overlap += int((mask & (truth > 0)).sum())
        predicted, true = predicted + int(mask.sum()), true + int((truth > 0).sum())
    return 2 * overlap / max(predicted + true, 1)


def test_draw_train_correct_and_fine_tune_gives_a_better_model(tmp_path):
    raw = write_demo_dataset(tmp_path / "raw", kind="cells", count=10, size=64, seed=3)
    stems = sorted(p.stem for p in (raw / "images").glob("*.png"))
    images = {s: cv2.imread(str(raw / "images" / f"{s}.png"), cv2.IMREAD_UNCHANGED) for s in stems}
    truths = {s: cv2.imread(str(raw / "masks" / f"{s}.png"), cv2.IMREAD_UNCHANGED) for s in stems}
    to_draw, held_back = stems[:6], stems[6:]
    workspace = tmp_path / "ws"
    runs_root = workspace / "runs"
    dataset, _ = annotation.new_image_dataset([(raw / "images" / f"{s}.png", f"{s}.png") for s in to_draw],
                                              "plates", workspace / "datasets", classes=["background", "cell"])
    assert dataset.stems == [] and len(dataset.unlabelled) == 6

    for stem in to_draw[:3]:  # the user draws three images, every pixel (the canvas paints class k as k + 1)
        drawn = annotation.to_drawing(dataset, truths[stem])
        dataset = annotation.save_annotation(dataset, stem, drawn, runs_root).dataset
    assert dataset.name == "plates-v2" and len(dataset.stems) == 3

    config = Config.from_dict(CONFIG)
    first = runs_root / "first"
    assert train(first, dataset.root, config) == 0

    # The model fills the fourth image; the user corrects it (here: paints the truth over it) and it is saved.
    predicted = annotation.predicted_annotation(Predictor.from_run(first).predict(images[to_draw[3]]), dataset)
    assert predicted.shape == truths[to_draw[3]].shape
    saved = annotation.save_annotation(dataset, to_draw[3], annotation.to_drawing(dataset, truths[to_draw[3]]),
                                       runs_root)
    assert saved.forked_from == "plates-v2"  # the first run's data stays as it trained on it
    dataset = saved.dataset
    assert dataset.name == "plates-v3" and len(dataset.stems) == 4

    source = finetune.resolve_source(first)
    tuned_config = finetune.fine_tune_config(config.replace(train=dataclasses.replace(config.train, epochs=20)), source)
    assert tuned_config.train.learning_rate < config.train.learning_rate
    second = runs_root / "second"
    assert train(second, dataset.root, tuned_config) == 0
    fresh = runs_root / "fresh"
    from_scratch = tuned_config.replace(train=dataclasses.replace(tuned_config.train, init_from=None))
    assert train(fresh, dataset.root, from_scratch) == 0

    record = json.loads((second / "init_from.json").read_text())
    assert record["run"] == "first" and record["kind"] == "run" and record["copied_layers"] > 0
    assert record["model_path"] == str(first.resolve() / runs.BEST_MODEL) and not record["head_replaced"]
    assert "fine-tuning from run" in runs.Run(second).read_status()["init_from"]
    assert not (fresh / "init_from.json").exists()
    assert _first_loss(second) < _first_loss(fresh)  # it starts from the first run's weights

    recorded = json.loads((second / runs.TRAINING_DATA).read_text())
    assert recorded["name"] == "plates-v3"  # the run records the version it used
    held_images, held_truths = [images[s] for s in held_back], [truths[s] for s in held_back]
    before, after = _dice(first, held_images, held_truths), _dice(second, held_images, held_truths)
    scratch = _dice(fresh, held_images, held_truths)
    print(f"first-epoch loss fine-tuned {_first_loss(second):.3f} fresh {_first_loss(fresh):.3f}; held-back Dice: "
          f"first run {before:.3f}, fine-tuned {after:.3f}, same training from scratch {scratch:.3f}")
    # Starting from the first run is what makes the short fine-tuning good: far above the same training from
    # scratch. Against the first run itself (already near this tiny network's ceiling on easy cells, scored on 4
    # images) the difference is noise from CPU threads' non-determinism: -0.10 to +0.08 over 9 runs, so it is
    # printed, not asserted.
    assert after > scratch + 0.05, (after, scratch)
