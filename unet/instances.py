"""Separating touching objects: what the network learns for it, how its output becomes one id per object, and how
objects are counted, matched and measured.

Connected components of a foreground mask merge every pair of touching objects (on DSB2018 nuclei, even the true
pixel mask split into components finds only 79% of them at IoU 0.5). The peers split them with a learned
boundary and a seeded watershed (BiaPy's contour channel, ilastik's watershed); this module does the same with
three classes that the ordinary semantic trainer can learn as they are:

- `boundary_targets`: 0 background, 1 object interior, 2 object boundary (a band `width` pixels wide inside each
  object wherever it meets the background or another object);
- `labels_from_classes`: seeds are the connected interiors, grown by a watershed over the foreground (interior and
  boundary), so each touching object keeps its own id; objects under `min_size` pixels are dropped (for class
  maps: the true targets, the trainer's sample crops);
- `labels_from_probabilities`: the same from a prediction's probabilities, seeded where the interior is likely;
- matching objects and scoring them (AP, F1, PQ over IoU thresholds) is `unet.object_scores`;
- `object_table`: one row per object (`skimage.measure.regionprops_table`).

Pure NumPy and scikit-image: no TensorFlow, so the pages, the command line and the tests can all use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
TABLE_PROPERTIES = ("label", "area", "centroid", "bbox", "perimeter", "eccentricity")


def boundary_targets(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """uint8 [H, W]: 0 background, 1 interior, 2 the inner `width`-pixel band of each object (where it touches the
    background or another object), from an instance label image (0 = background, one id per object)."""
    from skimage.morphology import dilation, disk
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    edges = find_boundaries(labels, mode="inner", background=0)
    if width > 1:
        edges = dilation(edges, disk(width - 1)) & (labels > 0)
    targets = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.uint8)
    targets[edges] = BOUNDARY
    return targets


def labels_from_classes(classes: np.ndarray, interior_probability: np.ndarray | None = None,
                        min_size: int = 0) -> np.ndarray:
    """An instance label image (int32, 0 = background) from a 3-class prediction (0/1/2 as `boundary_targets`).

    Seeds are the connected interiors; a watershed grows them over the whole foreground, following
    `interior_probability` when given (else the distance to the boundary), so touching objects stay apart.
    """
    from skimage.measure import label
    from skimage.segmentation import watershed

    classes = np.asarray(classes)
    seeds = label(classes == INTERIOR, connectivity=1)
    foreground = classes != BACKGROUND
    if interior_probability is None:
        from scipy.ndimage import distance_transform_edt

        surface = -distance_transform_edt(classes == INTERIOR)
    else:
        surface = -np.asarray(interior_probability, np.float32)
    labels = watershed(surface, markers=seeds, mask=foreground)
    return drop_small_objects(labels.astype(np.int32), min_size)


SEED_PROBABILITY = 0.8  # an object's seed: foreground pixels at least this likely to be its interior


def labels_from_probabilities(foreground: np.ndarray, interior: np.ndarray, seed_probability: float = SEED_PROBABILITY,
                              min_size: int = 0) -> np.ndarray:
    """An instance label image (int32) from a prediction: `foreground` (bool) and the interior probability.

    Seeds are the connected regions where the interior is at least `seed_probability` likely; a watershed over
    the interior probability grows them across the foreground, so touching objects keep apart at their boundary.
    Foreground with no confident interior is left out (a blur, not an object). Measured on the 10 validation
    images of DSB2018 (instance run, 10 minutes, 256-px crops): AP@0.5 0.65 / 0.66 / 0.67 averaged per image for
    seeds at 0.5 / 0.8 / 0.9, against 0.53 for connected regions and 0.46 for seeds where the interior beats the
    boundary (the first rule); 0.8 sits on that plateau without dropping fainter objects.
    """
    from skimage.measure import label
    from skimage.segmentation import watershed

    interior = np.asarray(interior, np.float32)
    seeds = label(foreground & (interior >= seed_probability), connectivity=1)
    labels = watershed(-interior, markers=seeds, mask=foreground)
    return drop_small_objects(labels.astype(np.int32), min_size)


def drop_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """`labels` without the objects under `min_size` pixels (set to background); ids are kept as they are."""
    if min_size <= 0:
        return labels
    counts = np.bincount(labels.ravel())
    small = np.flatnonzero((counts > 0) & (counts < min_size))
    small = small[small != 0]
    if small.size:
        labels = np.where(np.isin(labels, small), 0, labels)
    return labels


def label_file_pixels(labels: np.ndarray) -> np.ndarray:
    """Object ids as a file holds them: uint8 up to 255 objects, uint16 up to 65535 (PNG and TIFF hold both, and
    Fiji, napari and Cellpose read them as label images); more is refused."""
    from unet.errors import UserError

    top = int(labels.max()) if labels.size else 0
    if top > 65535:
        raise UserError(f"{top} objects found; a label image holds at most 65535")
    return labels.astype(np.uint8 if top <= 255 else np.uint16)


def label_colours(labels: np.ndarray, image: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """uint8 RGB: each object in its own colour over `image` (uint8 gray or RGB), with its outline drawn fully,
    so touching objects are told apart at a glance. Colours are fixed per id (the same object keeps its colour
    when a slider moves)."""
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image[:, :, :3]
    rgb = rgb.astype(np.float32)
    ids = labels.astype(np.int64)
    palette = np.random.default_rng(11).integers(60, 256, (int(ids.max()) + 1, 3)).astype(np.float32)
    inside = ids > 0
    rgb[inside] = (1 - opacity) * rgb[inside] + opacity * palette[ids[inside]]
    edges = find_boundaries(ids, mode="inner") & inside
    rgb[edges] = palette[ids[edges]]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def object_table(labels: np.ndarray, image: np.ndarray | None = None, name: str = "") -> list[dict[str, Any]]:
    """One row per object: id, area, centroid, bounding box, perimeter, eccentricity, and the mean intensity of
    each channel of `image` when given (`skimage.measure.regionprops_table`)."""
    from skimage.measure import regionprops_table

    labels = np.asarray(labels).astype(np.int32)
    if not labels.any():
        return []
    properties = list(TABLE_PROPERTIES)
    intensity = None
    if image is not None:
        intensity = image if image.ndim == 3 else image[..., None]
        properties.append("intensity_mean")
    table = regionprops_table(labels, intensity_image=intensity, properties=properties)
    rows = []
    for i in range(len(table["label"])):
        row: dict[str, Any] = {
            "image": name, "id": int(table["label"][i]), "area": int(table["area"][i]),
            "centroid_y": float(table["centroid-0"][i]), "centroid_x": float(table["centroid-1"][i]),
            "bbox_top": int(table["bbox-0"][i]), "bbox_left": int(table["bbox-1"][i]),
            "bbox_bottom": int(table["bbox-2"][i]), "bbox_right": int(table["bbox-3"][i]),
            "perimeter": float(table["perimeter"][i]), "eccentricity": float(table["eccentricity"][i]),
        }
        if intensity is not None:
            for c in range(intensity.shape[-1]):
                row[f"mean_intensity_{c}"] = float(table[f"intensity_mean-{c}"][i])
        rows.append(row)
    return rows


def objects_of_mask(mask: np.ndarray, class_names: list[str] | tuple[str, ...], image: np.ndarray | None = None,
                    name: str = "") -> list[dict[str, Any]]:
    """The object table of a class mask: each foreground class's 8-connected patches, one row each, with the
    class named. Touching objects of one class are one patch here; separating them is the instance task's job."""
    from skimage.measure import label

    rows: list[dict[str, Any]] = []
    for k in range(1, len(class_names)):
        patches = label(np.asarray(mask) == k, connectivity=2)
        rows += [{"class": class_names[k], **row} for row in object_table(patches, image, name)]
    return rows


OBJECT_COLUMNS = ("image", "id", "area", "centroid_y", "centroid_x", "bbox_top", "bbox_left", "bbox_bottom",
                  "bbox_right", "perimeter", "eccentricity")  # `object_table`'s, before the intensity columns


def table_csv(rows: list[dict[str, Any]], header: tuple[str, ...] = ()) -> str:
    """Rows of any one shape as CSV text (the columns of the first row, or `header` when there is no row, so an
    empty table still says what it would hold); text that a spreadsheet would run as a formula is quoted with a
    leading apostrophe."""
    import csv
    import io

    buffer = io.StringIO()
    if rows or header:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else list(header), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in row.items()})
    return buffer.getvalue()
