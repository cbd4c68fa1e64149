"""Scoring a run's best model on a labelled dataset: `python -m unet evaluate`, the Runs page and the report.

Prediction goes through `unet.inference.Predictor.from_run`, the code the Inference page runs, so an image is
scored exactly as a user would see it predicted: at its own size, with the run's channels, scale and
normalisation, against its mask as stored (never resized). An image is fed as the user's file held it
(`Dataset.as_given`), so other data is read with the run's intensity rule exactly as `predict` reads it, whatever
the bit depth of the folder's other images. The best threshold of the sweep can therefore be handed to the
Inference page as it is. For a run that separates touching objects every pixel score (and the sweep) describes
the foreground of its object ids, the mask `predict` writes (`scored_mask`), so a folder of its own label files
scores exactly 1.

Classes come from the run's class map (`unet.classmap`), never from the evaluation data: a raw folder is read with
the run's values, a stored dataset is matched to the run's classes by value, and a mask with a value the run does
not know is a problem that names the file. Pixels are counted over the images before Dice and IoU are computed
(pooled, `unet.metrics`' NumPy form): every class is scored, background included; a class absent from both truth
and prediction is not scored; the headline is the mean over the scored foreground classes and names them; and the
trivial baseline (every pixel the images' most common class) is scored on the same images beside it.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet import metrics, object_tuning, pipeline, postprocess, runs, task
from unet.classmap import IGNORE_INDEX, ClassEntry, ClassMap
from unet.dataset import DATASET_FILE, Dataset, ingest
from unet.errors import UserError
from unet.inference import Prediction, Predictor
from unet.object_scores import ObjectScores, summary_sentence

DEFAULT_THRESHOLD = metrics.BINARY_THRESHOLD
SWEEP = np.round(np.arange(0.05, 0.951, 0.05), 2)  # thresholds tried for binary models: 0.05, 0.10, ..., 0.95
GALLERY_SIZE = 12  # worst images kept as pictures
GALLERY_SIDE = 256  # pixels, the longer side of a gallery picture
SPLITS = ("test", "val", "train", "all")  # which of a run's own images are scored; other data is scored whole

Progress = Callable[[float, str], None]


def _number(value: float) -> float | None:
    """JSON-safe: NaN (a class that is not scored) becomes None."""
    return float(value) if np.isfinite(value) else None


def sweep_counts(probability: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) float64 [T, 3] of a binary prediction at every threshold, in one pass over the pixels.

    A pixel is foreground at threshold t when its probability is > t (as `Prediction.mask` decides), so the
    number of thresholds it passes is the count of thresholds strictly below it.
    """
    thresholds = np.asarray(thresholds, np.float32)
    labelled = truth.ravel() < 2  # "not labelled" pixels (255) are left out
    passes = np.searchsorted(thresholds, probability.astype(np.float32).ravel()[labelled], side="left")
    positive = truth.ravel()[labelled] > 0
    size = len(thresholds) + 1
    # Pixels passing exactly j thresholds are foreground for thresholds 0..j-1: reverse cumulative sums.
    fg = np.cumsum(np.bincount(passes[positive], minlength=size)[::-1])[::-1][1:]
    bg = np.cumsum(np.bincount(passes[~positive], minlength=size)[::-1])[::-1][1:]
    return np.stack([fg, bg, positive.sum() - fg], axis=1).astype(np.float64)


def scored_mask(prediction: Prediction, threshold: float, labels: np.ndarray | None = None) -> np.ndarray:
    """uint8 class indices: the mask every pixel score describes, the one `predict` writes.

    For a run that separates touching objects, the foreground of its object ids (`Prediction.labels`, what
    `predict` writes for it): a foreground blur without a confident interior is no object, so it is no foreground
    either. For every other run, `Prediction.mask` (probability over the threshold, or the most likely class).
    `labels`, when given, are that prediction's ids at this threshold (computed once for the object scores).
    """
    if not prediction.separates_objects:
        return prediction.mask(threshold)
    ids = prediction.labels(threshold) if labels is None else labels
    return (ids > 0).astype(np.uint8)


def seeded_foreground(prediction: Prediction, threshold: float) -> np.ndarray:
    """bool [H, W]: `Prediction.labels(threshold) > 0` of an object-separating run, without the watershed.

    The watershed floods every 4-connected region of the foreground (probability >= threshold) that holds a seed
    (interior probability >= the prediction's seed level) and nothing else, so those regions are its foreground;
    labelling them costs a few milliseconds where the watershed costs a quarter of a second on 512x512 pixels, which the
    threshold sweep pays 19 times per image. `tests/test_honest_figures.py` checks both agree at every threshold.
    The run's minimum object size is not applied here: the sweep's Dice counts the specks it would drop.
    """
    from scipy.ndimage import label

    foreground = prediction.probabilities[..., 0].astype(np.float32) >= threshold
    regions, _ = label(foreground)  # 4-connected, as the watershed floods
    interior = np.asarray(prediction.interior, np.float32) >= prediction.seed_probability
    seeded = np.unique(regions[foreground & interior])
    return np.isin(regions, seeded[seeded > 0])


def sweep_counts_of_labels(prediction: Prediction, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) float64 [T, 3] of an object-separating run's mask (`scored_mask`) at every threshold."""
    rows = []
    for t in thresholds:
        mask = seeded_foreground(prediction, float(t)).astype(np.uint8)
        counts = metrics.counts_from_matrix(metrics.confusion_matrix(mask, truth, 2))
        rows.append(counts[1, :3])  # the foreground's (tp, fp, fn); "not labelled" truth pixels are left out
    return np.array(rows, np.float64)


def best_of_sweep(thresholds: np.ndarray, dice: np.ndarray) -> float:
    """The threshold with the highest Dice; among equals, the one closest to 0.5 (the untuned default)."""
    dice = np.nan_to_num(np.asarray(dice, np.float64), nan=-1.0)
    best = np.flatnonzero(dice >= dice.max() - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - DEFAULT_THRESHOLD))]])


# ----------------------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    """One image of the worst-first gallery: true positives green, false positives red, false negatives blue."""

    image: str
    dice: float
    picture: np.ndarray  # uint8 RGB, longer side at most GALLERY_SIDE


@dataclass
class Evaluation:
    """Everything the evaluation found; `to_dict()` is the JSON of `python -m unet evaluate --json`.

    `confusion` [K, K] has true classes in rows (the pooled pixels of every scored image); `per_image` rows are
    sorted worst first; `sweep` (binary models only) has one {"threshold", "dice", "iou"} per threshold.
    """

    run: str
    class_names: list[str]
    threshold: float
    confusion: np.ndarray
    per_image: list[dict[str, Any]]
    class_values: list[Any] = field(default_factory=list)
    split: str = "all"
    data: str = ""
    problems: list[dict[str, str]] = field(default_factory=list)
    sweep: list[dict[str, float]] = field(default_factory=list)
    best_threshold: float | None = None
    worst: list[GalleryItem] = field(default_factory=list)
    objects: dict[str, Any] | None = None  # object-level scores (`unet.object_scores`) for binary and instance runs
    first_scored: int = 1  # 1: class 0 is the background, left out of the headline; 0: every class is averaged

    @property
    def counts(self) -> np.ndarray:
        return metrics.counts_from_matrix(self.confusion)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def images(self) -> int:
        return len(self.per_image)

    @property
    def per_class_scores(self) -> tuple[np.ndarray, np.ndarray]:
        return metrics.dice_iou(self.counts)

    @property
    def averaged_over(self) -> list[str]:
        """The classes the headline averages: the scored classes, the background (if any) left out."""
        dice = self.per_class_scores[0]
        return [self.class_names[k] for k in range(self.first_scored, self.num_classes) if np.isfinite(dice[k])]

    @property
    def dice(self) -> float | None:
        return metrics.headline(self.per_class_scores[0], self.first_scored)

    @property
    def iou(self) -> float | None:
        return metrics.headline(self.per_class_scores[1], self.first_scored)

    @property
    def pixel_accuracy(self) -> float:
        pixels = self.confusion.sum()
        return float(np.trace(self.confusion) / pixels) if pixels else 1.0

    def _class_rows(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        dice, iou = metrics.dice_iou(metrics.counts_from_matrix(matrix))
        values = self.class_values or [None] * self.num_classes
        return [
            {"class": k, "name": self.class_names[k], "value": values[k], "dice": _number(dice[k]),
             "iou": _number(iou[k]), "support_pixels": int(matrix[k].sum()),
             "predicted_pixels": int(matrix[:, k].sum())}
            for k in range(self.num_classes)
        ]

    @property
    def per_class(self) -> list[dict[str, Any]]:
        """Every class, background included: Dice and IoU (None when absent from truth and prediction), pixels."""
        return self._class_rows(self.confusion)

    @property
    def baseline(self) -> dict[str, Any]:
        """The trivial model on the same images: every pixel the most common true class."""
        matrix = metrics.baseline_matrix(self.confusion)
        dice, iou = metrics.dice_iou(metrics.counts_from_matrix(matrix))
        majority = int(np.argmax(self.confusion.sum(axis=1)))
        pixels = matrix.sum()
        return {
            "predicts": self.class_names[majority],
            "dice": metrics.headline(dice, self.first_scored), "iou": metrics.headline(iou, self.first_scored),
            "mean_dice_all_classes": metrics.mean_scored(dice),
            "pixel_accuracy": float(np.trace(matrix) / pixels) if pixels else 1.0,
            "per_class": self._class_rows(matrix),
        }

    @property
    def mean_dice_all_classes(self) -> float | None:
        return metrics.mean_scored(self.per_class_scores[0])

    @property
    def skill(self) -> float | None:
        return metrics.skill(self.mean_dice_all_classes, self.baseline["mean_dice_all_classes"])

    @property
    def near_baseline(self) -> bool:
        return metrics.near_baseline(self.dice, self.baseline["dice"], self.skill)

    def summary(self) -> str:
        """One plain sentence: the headline, what it averages, and the baseline beside it."""
        return headline_sentence(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "dice": self.dice,
            "iou": self.iou,
            "averaged_over": self.averaged_over,
            "mean_dice_all_classes": self.mean_dice_all_classes,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class": self.per_class,
            "baseline": self.baseline,
            "skill": self.skill,
            "near_baseline": self.near_baseline,
            "split": self.split,
            "data": self.data,
            "images": self.images,
            "threshold": self.threshold,
            "best_threshold": self.best_threshold,
            "sweep": self.sweep,
            "confusion": {"classes": self.class_names, "matrix": self.confusion.tolist()},
            "per_image": self.per_image,
            "problems": self.problems,
            "objects": self.objects,
        }


def _fmt(value: float | None) -> str:
    return "not scored" if value is None else f"{value:.3f}"


def headline_sentence(result: dict[str, Any]) -> str:
    """'Dice 0.878 (cell only); predicting "cell" everywhere scores 0.877.' from an evaluation's JSON."""
    over = result.get("averaged_over") or []
    what = f"{over[0]} only" if len(over) == 1 else f"mean of {len(over)} classes: {', '.join(over)}"
    base = result.get("baseline") or {}
    text = f"Dice {_fmt(result.get('dice'))} ({what})"
    if base:
        text += f"; predicting \"{base.get('predicts')}\" everywhere scores {_fmt(base.get('dice'))}"
    return text + "."


# ----------------------------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------------------------


def _image_row(stem: str, matrix: np.ndarray, names: list[str], first: int = 1) -> dict[str, Any]:
    dice, iou = metrics.dice_iou(metrics.counts_from_matrix(matrix))
    pixels = int(matrix.sum())
    return {
        "image": stem,
        "dice": metrics.headline(dice, first),
        "iou": metrics.headline(iou, first),
        "pixel_accuracy": float(np.trace(matrix) / pixels) if pixels else 1.0,
        "per_class": [{"class": k, "name": names[k], "dice": _number(dice[k]), "iou": _number(iou[k])}
                      for k in range(len(names))],
    }


def run_class_map(run: runs.Run) -> ClassMap | None:
    """The class map the run recorded (None for a run recorded before classes carried their values)."""
    return ClassMap.from_record(run.training_data())


def class_index_table(data_map: ClassMap | None, run_map: ClassMap | None, dataset: Dataset, k: int,
                      notes: list[dict[str, Any]] | None = None) -> np.ndarray:
    """Stored class index -> the run's class index, matching classes by their value in the masks.

    Without values on either side (data stored by an older version) the indices are taken as they are. A value
    the run's map reads by its forgiving binary rule (a 0/128 dataset for a 0/255 run), as it decodes a raw mask,
    is taken so, with a note appended to `notes` (as `{"file", "problem", "skipped": False}`).
    Raises UserError for a class of the data that the run does not know and that holds pixels.
    """
    table = np.full(IGNORE_INDEX + 1, IGNORE_INDEX, np.uint8)  # unlabelled stays unlabelled
    if data_map is None or run_map is None:
        if dataset.num_classes > k:
            raise UserError(f"the dataset has {dataset.num_classes} classes but the model knows only {k}")
        table[:k] = np.arange(k)
        return table
    by_key = {e.key: e.index for e in run_map.entries if e.key is not None}
    background = data_map.entries[0].key
    for entry, info in zip(data_map.entries, dataset.classes, strict=True):
        if entry.key in by_key:
            table[entry.index] = by_key[entry.key]
        elif entry.key is None and entry.index < k:
            table[entry.index] = entry.index
        elif (stand_in := _stand_in(data_map, run_map, entry, background, dataset.name)) is not None:
            table[entry.index], note = stand_in
            if notes is not None:
                notes.append({"file": dataset.name, "problem": note, "skipped": False})
        elif info.pixels:
            raise UserError(f"the dataset's class '{entry.name}' (value {entry.value}) is not one of the model's "
                            f"classes ({run_map.describe()})")
    return table


def _stand_in(data_map: ClassMap, run_map: ClassMap, entry: ClassEntry, background: int | None, name: str
              ) -> tuple[int, str] | None:
    """The run's class for a binary dataset's foreground value that the run's map reads by its forgiving rule
    (`ClassMap.lookup`, as for a raw mask of those two values), with the note that says so; else None."""
    if data_map.num_classes != 2 or entry.index != 1 or entry.key is None or background != 0:
        return None
    keys = np.array([0, entry.key], np.int64)
    index, unknown = run_map.lookup(keys)
    notes = run_map.stand_in_notes(keys, index, f"the dataset '{name}' (its class '{entry.name}')")
    if unknown or not notes:
        return None
    return int(index[1]), notes[0]


def _open_data(run: runs.Run, data: Path | None, scratch: Path, run_map: ClassMap | None) -> tuple[Dataset, list]:
    """The dataset to score and the problems found in it: a stored one as it is, a raw one read with the run's map."""
    if data is None:
        return _own_dataset(run), []
    data = Path(data)
    if (data / DATASET_FILE).exists():
        return Dataset.load(data), []
    if not data.exists():
        raise UserError(f"there is no dataset at '{data.name}'")
    if run_map is None:
        return pipeline.open_dataset(data, scratch / "data"), []
    dataset, report = ingest(data, "data", scratch, class_map=run_map)
    return dataset, [{**p.to_dict(), "skipped": p.skipped} for p in report.problems]


def _own_dataset(run: runs.Run) -> Dataset:
    """The dataset the run trained on: its stored copy inside the run, else the stored dataset it names."""
    own = run.file(runs.DATA)
    if (own / DATASET_FILE).exists():
        return Dataset.load(own)
    recorded = run.training_data()
    path = Path(recorded.get("path", ""))
    if recorded.get("path") and (path / DATASET_FILE).exists():
        return Dataset.load(path)
    raise UserError(f"the dataset run '{run.name}' trained on is no longer there; choose a dataset to evaluate on")


def _split_stems(run: runs.Run, dataset: Dataset, split: str | None, own: bool) -> tuple[str, list[str]]:
    """The split's name and its stems. By default, on the run's own data, its test set when it has one (never
    trained on, never used to choose the model), else its validation images (held back from training)."""
    recorded = run.training_data()
    same = own or (bool(recorded.get("hash")) and recorded.get("hash") == dataset.hash)
    if split is None:
        split = "test" if same and recorded.get("test") else ("val" if same and recorded.get("val") else "all")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if split == "all":
        return split, list(dataset.stems)
    what = {"test": "test", "val": "held-back (validation)", "train": "training"}[split]
    if not same:
        raise UserError(f"'{split}' names the run's own {what} images, and this is not the dataset the run trained "
                        "on; use the split 'all'")
    if not recorded.get(split):
        raise UserError(f"the run has no {what} images" + (" (set a test set aside on the Dataset page before "
                                                            "training)" if split == "test" else ""))
    stems = [stem for stem in recorded[split] if stem in set(dataset.stems)]
    if not stems:
        raise UserError(f"none of the run's '{split}' images is in the dataset any more")
    return split, stems


def evaluate_detailed(
    run_dir: Path,
    data: Path | None = None,
    threshold: float | None = None,
    gallery: int = GALLERY_SIZE,
    progress: Progress | None = None,
    split: str | None = None,
) -> Evaluation:
    """Score the run's best model on the pairs of `data` (default: the run's own dataset).

    Args:
        run_dir: a run folder with config.json, training_data.json and model.keras.
        data: a stored dataset, or a raw folder/zip (read with the run's class map into a temporary folder inside
            the run, then removed); None for the dataset the run trained on.
        threshold: the foreground threshold of a binary model for the headline numbers (argmax for multi-class);
            None: 0.5, or for a separate-objects run the one chosen on its held-back images (`unet.object_tuning`,
            whose seed level and minimum object size its object ids use too).
        gallery: how many of the worst images to keep as error pictures.
        progress: called with (fraction done, message) after each image.
        split: "test", "val" (held back from training), "train" or "all"; None: on the run's own data its test
            set if it has one, else "val"; on other data "all".
    """
    run = runs.Run(Path(run_dir))
    predictor = Predictor.from_run(run.path)
    threshold = predictor.objects.threshold if threshold is None else threshold
    k, names = predictor.num_classes, list(predictor.class_names)
    run_map = run_class_map(run)
    first = run_map.first_scored if run_map is not None and predictor.task != task.INSTANCES else 1
    confusion = np.zeros((k, k), np.int64)
    sweep = np.zeros((len(SWEEP), 3), np.float64)
    rows: list[dict[str, Any]] = []
    worst: list[tuple[float, int, GalleryItem]] = []  # a heap on -dice: its top is the best kept, dropped first
    with tempfile.TemporaryDirectory(dir=run.path, prefix=".evaluate-") as scratch:
        dataset, problems = _open_data(run, data, Path(scratch), run_map)
        table = class_index_table(dataset.class_map, run_map, dataset, k, problems)
        split_name, stems = _split_stems(run, dataset, split, own=data is None)
        if not stems:
            raise UserError(f"the dataset '{dataset.name}' has no image/mask pairs")
        objects = ObjectScores() if predictor.num_classes == 2 else None
        for i, stem in enumerate(stems):
            image, stored = dataset.read_pair(stem)
            truth = table[stored]
            prediction = predictor.predict(dataset.as_given(stem, image))  # the values `predict` reads from the file
            labels = prediction.labels(threshold, predictor.objects.min_size) if objects is not None else None
            mask = scored_mask(prediction, threshold, labels)
            if objects is not None:  # touching objects: split by the instance task's watershed, else merged
                objects.add(task.true_objects(dataset, stem), labels, stem)
            matrix = metrics.confusion_matrix(mask, truth, k)
            confusion += matrix
            if prediction.separates_objects:
                sweep += sweep_counts_of_labels(prediction, truth, SWEEP)
            elif predictor.num_classes == 2:
                sweep += sweep_counts(prediction.probabilities[..., 0], truth, SWEEP)
            row = _image_row(stem, matrix, names, first)
            rows.append(row)
            score = 1.0 if row["dice"] is None else row["dice"]
            if gallery > 0:
                shown = dataset.picture(image)  # 16-bit and multi-channel images drawn by the intensity rule
                picture = postprocess.shrink(postprocess.error_overlay(shown, mask, truth), GALLERY_SIDE)
                entry = (-score, -i, GalleryItem(stem, score, picture))
                (heapq.heappush if len(worst) < gallery else heapq.heappushpop)(worst, entry)
            if progress is not None:
                progress((i + 1) / len(stems), f"scored {i + 1} of {len(stems)} images")

    result = Evaluation(
        run=run.name, class_names=names, threshold=float(threshold), confusion=confusion,
        per_image=sorted(rows, key=lambda r: 1.0 if r["dice"] is None else r["dice"]),
        class_values=[e.value for e in run_map.entries] if run_map else [], split=split_name,
        data=dataset.name if data is not None else f"{dataset.name} (the run's own data)", problems=problems,
        worst=[item for _, _, item in sorted(worst, key=lambda e: (-e[0], -e[1]))],
        objects=_objects_section(objects, predictor, dataset), first_scored=first,
    )
    if k == 2:
        dice, iou = metrics.dice_iou(np.column_stack([sweep, np.zeros(len(SWEEP))]))  # (tp, fp, fn, tn unused)
        result.sweep = [{"threshold": float(t), "dice": _number(d), "iou": _number(j)}
                        for t, d, j in zip(SWEEP, dice, iou, strict=True)]
        result.best_threshold = best_of_sweep(SWEEP, dice)
    return result


def _objects_section(objects: ObjectScores | None, predictor: Predictor, dataset: Dataset) -> dict[str, Any] | None:
    """The object scores with what was compared: how predicted objects were made, and where the true ones came from."""
    if objects is None:
        return None
    section = objects.to_dict()
    section["predicted_by"] = ("a watershed from the predicted object interiors (the instance task)"
                               if predictor.task == task.INSTANCES else
                               "the connected regions of the predicted mask (touching objects count as one; train "
                               "with 'Separate touching objects' to split them)")
    section["true_from"] = "the instance label masks" if dataset.instances else "the connected regions of the true mask"
    section["summary"] = summary_sentence(section)
    return section


MAX_TUNING_IMAGES = 50  # held-back images the object settings are chosen on: enough, and bounded in memory


def choose_object_settings(run_dir: Path, budget_seconds: float = object_tuning.BUDGET_SECONDS
                           ) -> object_tuning.ObjectSettings | None:
    """A separate-objects run's object settings (foreground threshold, seed level, minimum size) chosen on its
    held-back images and written to its folder (`unet.object_tuning`); None for every other run.

    The held-back (validation) images also chose the best epoch, never the test set: a test figure stays clean."""
    run = runs.Run(Path(run_dir))
    predictor = Predictor.from_run(run.path)
    if predictor.task != task.INSTANCES:
        return None
    dataset = _own_dataset(run)
    _, stems = _split_stems(run, dataset, "val", own=True)
    pairs = []
    for stem in stems[:MAX_TUNING_IMAGES]:
        image, _ = dataset.read_pair(stem)
        prediction = predictor.predict(dataset.as_given(stem, image))
        pairs.append((prediction.probabilities[..., 0].astype(np.float32),
                      np.asarray(prediction.interior, np.float32), task.true_objects(dataset, stem)))
    if not pairs:
        return None
    settings = object_tuning.tune(pairs, budget_seconds)
    object_tuning.write(run.path, settings)
    return settings


def evaluate(run_dir: Path, data: Path | None = None, threshold: float | None = None,
             split: str | None = None) -> dict[str, Any]:
    """The evaluation as JSON (see `Evaluation.to_dict`).

    Returns:
        {"dice", "iou" (means over the scored foreground classes), "averaged_over" (their names),
         "mean_dice_all_classes", "pixel_accuracy",
         "per_class": [{"class", "name", "value", "dice", "iou", "support_pixels", "predicted_pixels"} for every k],
         "baseline": {"predicts", "dice", "iou", "mean_dice_all_classes", "pixel_accuracy", "per_class"},
         "skill", "near_baseline", "split", "data", "images", "threshold", "best_threshold", "sweep",
         "confusion", "per_image" (worst first), "problems" ([{"file", "problem", "skipped"}]: `skipped` false for
         a note on data that was scored), "objects"}
    """
    return evaluate_detailed(run_dir, data, threshold=threshold, gallery=0, split=split).to_dict()
