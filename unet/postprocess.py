"""From probabilities to what a user looks at and measures: masks, clean-up, overlays, areas, scores.

Pure NumPy/OpenCV on arrays at the image's own size, so a threshold or opacity change is instant (the model is not
run again) and everything here can be tested without TensorFlow.

Connectivity: objects are 8-connected (a diagonal touch joins two pixels), so the background around them is
4-connected (a hole closed only diagonally is still a hole), the usual pairing that keeps the two consistent.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from unet import workspace
from unet.classmap import IGNORE_INDEX as UNLABELLED
from unet.errors import UserError
from unet.images import encode_png  # a truth pixel marked "not labelled"
from unet.overlay import colorize, overlay, to_rgb

OBJECT_CONNECTIVITY = 8
BACKGROUND_CONNECTIVITY = 4
TRUE_POSITIVE = (0, 200, 0)  # green
FALSE_POSITIVE = (230, 0, 0)  # red
FALSE_NEGATIVE = (0, 90, 255)  # blue
CSV_COLUMNS = ("image", "class", "name", "pixels", "percent", "objects")
_SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a cell starting so would run as a formula in Excel


# ----------------------------------------------------------------------------------------------------------------
# Masks and clean-up
# ----------------------------------------------------------------------------------------------------------------


def mask_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 class indices [H, W]: foreground where the sigmoid exceeds `threshold` (one channel), else argmax.

    The threshold applies to binary models only; a multi-class mask is the most probable class per pixel.
    """
    if probabilities.shape[-1] == 1:
        return (probabilities[..., 0] > threshold).astype(np.uint8)
    return np.argmax(probabilities, axis=-1).astype(np.uint8)


def _components(binary: np.ndarray, connectivity: int) -> tuple[int, np.ndarray, np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=connectivity)
    return count, labels, stats


def remove_small_objects(mask: np.ndarray, min_size: int) -> np.ndarray:
    """A copy of `mask` where objects (per class) of fewer than `min_size` pixels become background (0)."""
    out = mask.copy()
    if min_size <= 1:
        return out
    for k in np.unique(mask):
        if k == 0:
            continue
        _, labels, stats = _components(mask == k, OBJECT_CONNECTIVITY)
        small = stats[:, cv2.CC_STAT_AREA] < min_size  # a lookup table by label: one pass over the image
        small[0] = False  # label 0 is everything that is not class k
        if small.any():
            out[small[labels]] = 0
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A copy of `mask` where background enclosed by one class's object takes that class.

    Only background pixels are filled, so an object of another class inside a ring keeps its class.
    """
    out = mask.copy()
    for k in np.unique(mask):
        if k == 0:
            continue
        count, labels, _ = _components(mask != k, BACKGROUND_CONNECTIVITY)
        enclosed = np.ones(count, bool)  # a lookup table by label
        enclosed[0] = False  # label 0 is class k itself
        enclosed[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
        if enclosed.any():
            out[enclosed[labels] & (out == 0)] = k
    return out


def clean(mask: np.ndarray, min_size: int = 0, fill: bool = False) -> np.ndarray:
    """Small objects removed first, then holes filled, so a speck inside a ring does not block the fill."""
    mask = remove_small_objects(mask, min_size) if min_size > 1 else mask
    return fill_holes(mask) if fill else mask


def count_objects(mask: np.ndarray, k: int) -> int:
    """The number of separate (8-connected) objects of class `k`."""
    return _components(mask == k, OBJECT_CONNECTIVITY)[0] - 1


# ----------------------------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------------------------


def measure(mask: np.ndarray, class_names: Sequence[str], image: str = "", labels: np.ndarray | None = None
            ) -> list[dict[str, Any]]:
    """One row per foreground class: area in pixels and percent of the image, and the object count.

    Objects are a class's connected patches; with `labels` (a run that separates touching objects, one
    foreground class) they are the separated objects, so the table agrees with the picture and the object list.
    """
    from unet.instances import count_ids

    total = max(mask.size, 1)
    pixels = np.bincount(mask.ravel(), minlength=len(class_names))
    separated = count_ids(labels) if labels is not None else None
    rows = []
    for k in range(1, len(class_names)):
        objects = separated if separated is not None and k == 1 else count_objects(mask, k) if pixels[k] else 0
        rows.append({
            "image": image, "class": k, "name": class_names[k], "pixels": int(pixels[k]),
            "percent": round(100.0 * pixels[k] / total, 4), "objects": objects,
        })
    return rows


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_SPREADSHEET_FORMULA) else value


def measurements_csv(rows: Iterable[dict[str, Any]]) -> str:
    """The rows of `measure` (for any number of images) as CSV text with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key, "")) for key in CSV_COLUMNS})
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Against a ground-truth mask
# ----------------------------------------------------------------------------------------------------------------


def _check_truth(mask: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    truth = truth.reshape(truth.shape[:2]) if truth.ndim == 3 and truth.shape[2] == 1 else truth
    if truth.shape != mask.shape:
        raise UserError(
            f"the ground-truth mask is {truth.shape[1]}x{truth.shape[0]} pixels "
            f"but the image is {mask.shape[1]}x{mask.shape[0]}"
        )
    if truth.size and int(truth[truth != UNLABELLED].max(initial=0)) >= num_classes:
        raise UserError(f"the ground-truth mask has class {int(truth.max())} but the model knows {num_classes} classes")
    return truth


def confusion(mask: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class (tp, fp, fn, tn) pixel counts [K, 4], as `unet.metrics.confusion_counts` computes them."""
    truth = _check_truth(mask, truth, num_classes).astype(np.int64)
    matrix = np.bincount((truth * num_classes + mask).ravel(), minlength=num_classes**2)
    matrix = matrix.reshape(num_classes, num_classes).astype(np.float64)
    tp = np.diag(matrix)
    fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
    return np.stack([tp, fp, fn, matrix.sum() - tp - fp - fn], axis=1)


def scores(mask: np.ndarray, truth: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Dice and IoU for every class, background included (`unet.metrics`' rule: None for a class absent from
    both masks, 0 for one predicted but absent from the truth)."""
    from unet import metrics  # TensorFlow comes with it; only the pages that score truth need it

    truth = _check_truth(mask, truth, len(class_names))
    dice, iou = metrics.dice_iou(metrics.counts_from_matrix(metrics.confusion_matrix(mask, truth, len(class_names))))
    return [{"class": k, "name": class_names[k], "dice": float(dice[k]) if np.isfinite(dice[k]) else None,
             "iou": float(iou[k]) if np.isfinite(iou[k]) else None} for k in range(len(class_names))]


def baseline_scores(truth: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The trivial baseline on one true mask: every pixel its most common class; that class and the headline Dice."""
    from unet import metrics

    matrix = metrics.confusion_matrix(truth, truth, len(class_names))
    dice, _ = metrics.dice_iou(metrics.counts_from_matrix(metrics.baseline_matrix(matrix)))
    return {"predicts": class_names[int(np.argmax(matrix.sum(axis=1)))], "dice": metrics.headline(dice)}


def headline(rows: list[dict[str, Any]]) -> float | None:
    """The mean Dice over the scored foreground classes of `scores`' rows, as evaluation's headline."""
    scored = [row["dice"] for row in rows if row["class"] > 0 and row["dice"] is not None]
    return sum(scored) / len(scored) if scored else None


def error_overlay(image: np.ndarray, mask: np.ndarray, truth: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The image with true positives green, false positives red and false negatives blue (foreground pixels).

    A pixel given the wrong foreground class is red: the prediction claims something that is not there.
    """
    truth = truth.reshape(truth.shape[:2]) if truth.ndim == 3 else truth
    truth = np.where(truth == UNLABELLED, mask, truth)  # "not labelled" pixels are neither right nor wrong
    truth = _check_truth(mask, truth, max(int(mask.max(initial=0)), int(truth.max(initial=0))) + 1)
    kinds = np.zeros(mask.shape, np.uint8)
    kinds[(truth > 0) & (mask == truth)] = 1
    kinds[(mask > 0) & (mask != truth)] = 2
    kinds[(truth > 0) & (mask == 0)] = 3
    colors = np.array([(0, 0, 0), TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE], np.uint8)
    return overlay(image, kinds, colors, opacity=opacity)


# ----------------------------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------------------------


def shrink(picture: np.ndarray, max_side: int | None) -> np.ndarray:
    """`picture` scaled down (area interpolation) so its longer side is at most `max_side`; never enlarged."""
    if not max_side or max(picture.shape[:2]) <= max_side:
        return picture
    scale = max_side / max(picture.shape[:2])
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def side_by_side(
    image: np.ndarray,
    mask: np.ndarray,
    colors: np.ndarray,
    opacity: float = 0.5,
    contours: bool = False,
    visible: Sequence[int] | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """image | overlay | mask in one RGB picture, each panel at most `max_side` on its longer side.

    The image and the mask are shrunk first (the mask by nearest neighbour), so a 6000x4000 image costs a panel's
    pixels, not the 35 bytes a pixel that tinting it whole would.
    """
    image, mask = shrink(image, max_side), shrink_mask(mask, max_side)
    shown = mask if visible is None else np.where(np.isin(mask, list(visible)), mask, 255)  # hidden: black
    panels = [to_rgb(image), overlay(image, mask, colors, opacity, contours, visible), colorize(shown, colors)]
    return np.concatenate(panels, axis=1)


def shrink_mask(mask: np.ndarray, max_side: int | None) -> np.ndarray:
    """`mask` (class indices or ids) at `shrink`'s size, by nearest neighbour: no value is invented."""
    if not max_side or max(mask.shape[:2]) <= max_side:
        return mask
    scale = max_side / max(mask.shape[:2])
    height, width = max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale))
    rows = np.minimum((np.arange(height) + 0.5) * mask.shape[0] / height, mask.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * mask.shape[1] / width, mask.shape[1] - 1).astype(np.intp)
    return mask[np.ix_(rows, cols)]


STRIP_ROWS = 1024  # rows tinted at a time for a download's full-size overlay
_STRIP_MARGIN = 2  # rows of context each side, so an outline is not drawn where a strip cuts an object


def overlay_in_strips(image: np.ndarray, mask: np.ndarray, colors: np.ndarray, opacity: float = 0.5,
                      contours: bool = False) -> np.ndarray:
    """`unet.overlay.overlay` of a whole image, tinted a strip of rows at a time: the same picture, in 3 bytes a
    pixel plus one strip's working memory instead of about 35 bytes a pixel."""
    height = mask.shape[0]
    if height <= STRIP_ROWS:
        return overlay(image, mask, colors, opacity, contours)
    out = np.empty((*mask.shape[:2], 3), np.uint8)
    for top in range(0, height, STRIP_ROWS):
        start, stop = max(0, top - _STRIP_MARGIN), min(height, top + STRIP_ROWS + _STRIP_MARGIN)
        part = overlay(image[start:stop], mask[start:stop], colors, opacity, contours)
        out[top : min(top + STRIP_ROWS, height)] = part[top - start : top - start + min(STRIP_ROWS, height - top)]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageResult:
    """One image's result on the Inference page: its mask, and its true mask and scores when one was given."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    truth: np.ndarray | None = None
    scores: list[dict[str, Any]] | None = None
    notes: tuple[str, ...] = ()
    picture: np.ndarray | None = None  # uint8 RGB to show (`Predictor.picture`); `image` keeps the values to measure
    labels: np.ndarray | None = None  # one id per object, for runs that separate touching objects

    @property
    def shown(self) -> np.ndarray:
        """What pictures draw on: the display picture, or the image itself when it is 8-bit already."""
        return self.picture if self.picture is not None else self.image

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def dice(self) -> float | None:
        """The headline Dice against the true mask (None without one, or when nothing is scored)."""
        return headline(self.scores) if self.scores else None


def results_zip(results: Iterable[ImageResult], mask_file: Any, colors: np.ndarray, class_names: Sequence[str],
                opacity: float = 0.5, contours: bool = False, measured: Any = None) -> bytes:
    """The zip a user downloads: per image the mask file (`mask_file(mask) -> (pixels, palette)`: the training
    masks' own values), the class numbers (class_indices/), the overlay, and the object ids (labels/) when the run
    separates objects; for all images measurements.csv (per class) and objects.csv (per object;
    `measured(image name) -> columns or None` may supply tables already measured (`unet.instances.object_columns`,
    `mask_objects`); the rest are measured here)."""
    from unet.instances import join_tables, label_file, mask_objects, object_columns, table_csv

    items: list[tuple[str, np.ndarray | bytes | str]] = []
    rows: list[dict[str, Any]] = []
    objects: list[dict[str, np.ndarray]] = []
    for result in results:
        _, overlaid = result_items(result.stem, result.shown, result.mask, colors, opacity, contours)
        items += [(f"masks/{result.stem}.png", encode_png(*mask_file(result.mask))),
                  (f"class_indices/{result.stem}.png", encode_png(result.mask.astype(np.uint8))),
                  (overlaid[0], encode_png(overlaid[1]))]
        del overlaid
        rows += measure(result.mask, class_names, image=result.name, labels=result.labels)
        if result.labels is not None:  # one id per object: 16-bit PNG past 255 objects, 32-bit TIFF past 65535
            data, suffix = label_file(result.labels)
            items.append((f"labels/{result.stem}{suffix}", data))
        table = measured(result.name) if measured is not None else None
        objects.append(table if table is not None
                       else object_columns(result.labels, result.image, result.name) if result.labels is not None
                       else mask_objects(result.mask, list(class_names), result.image, name=result.name))
    return zip_results([*items, ("measurements.csv", measurements_csv(rows)),
                        ("objects.csv", table_csv(join_tables(objects)))])


def result_items(
    stem: str, image: np.ndarray, mask: np.ndarray, colors: np.ndarray, opacity: float = 0.5, contours: bool = False
) -> list[tuple[str, np.ndarray]]:
    """The files one image contributes to a download: masks/STEM.png (class indices) and overlays/STEM.png."""
    return [(f"masks/{stem}.png", mask),
            (f"overlays/{stem}.png", overlay_in_strips(image, mask, colors, opacity, contours))]


def zip_results(items: Iterable[tuple[str, np.ndarray | bytes | str]]) -> bytes:
    """A zip of (name, content) pairs: arrays become PNGs, text is UTF-8. Names are sanitised and made unique."""
    buffer, used = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in items:
            parts = [workspace.safe_name(p, fallback="file") for p in str(name).split("/") if p.strip(" .")]
            arcname, base, n = "/".join(parts) or "file", "/".join(parts) or "file", 1
            while arcname in used:
                n += 1
                stem, dot, ext = base.rpartition(".")
                arcname = f"{stem}-{n}.{ext}" if dot else f"{base}-{n}"
            used.add(arcname)
            if isinstance(content, np.ndarray):
                content = encode_png(content)
            archive.writestr(arcname, content.encode("utf-8") if isinstance(content, str) else content)
    return buffer.getvalue()
