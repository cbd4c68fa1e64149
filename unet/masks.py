"""Turning masks into class indices, deciding once for the whole dataset.

Masks come as binary pictures with any two values (0/1, 0/255, 0/1000 in 16 bit), index pictures 0..K-1,
colour pictures (each colour a class; palette PNGs arrive as their palette colours) and JPEGs whose compression
noise smears every edge into dozens of values. The values are counted over all masks first; the classes are the
values found there, except for JPEG masks (or masks with more values than classes allowed), where the classes
are the well-populated histogram peaks and every other value snaps to the nearest peak, so noise never invents
a class. The background is value 0 / black when present, else the most common value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from unet.errors import UserError

MAX_CLASSES = 32  # background included; what the model accepts
PEAK_MIN_FRACTION = 0.005  # a peak must hold this share of all mask pixels to be a class in a noisy mask
GRAY_NOISE_RADIUS = 24  # 8-bit levels: peaks closer than this are one class smeared by noise
COLOUR_NOISE_RADIUS = 48  # Euclidean distance in RGB, for the same purpose
GRAY_BIN, COLOUR_BIN = 8, 16  # bin widths that pool a noisy class's values into one peak
FLAT_TOLERANCE = 24  # a pixel is inside a region when its 3x3 neighbourhood varies by at most this much
EXACT_MIN_FRACTION = 0.9  # a lossless mask with too many values is snapped only if its peaks hold this share
_COLOUR_FLAG = 1 << 24  # marks packed RGB keys apart from gray values

# A readable palette for index masks (background first), after Sasha Trubetskoy's 20 distinct colours.
PALETTE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
    (128, 128, 128), (255, 255, 255), (100, 60, 60), (60, 100, 60), (60, 60, 100), (200, 100, 0), (0, 200, 100),
    (100, 0, 200), (200, 0, 100), (100, 200, 0), (0, 100, 200), (180, 180, 80),
]  # fmt: skip


class MaskKind(StrEnum):
    BINARY = "binary"  # background and one class
    INDEX = "index"  # gray values, several classes
    COLOUR = "colour"  # each colour a class


@dataclass(frozen=True)
class MaskHistogram:
    """How often each value (or packed colour) occurs in one mask, over all pixels and over flat ones.

    Flat pixels (their 3x3 neighbourhood nearly uniform) are the insides of regions; a class's peak is looked for
    there, so the in-between values along every edge of a JPEG or an antialiased mask never form a class.
    """

    keys: np.ndarray  # gray values, or 0xRRGGBB | _COLOUR_FLAG for colours
    counts: np.ndarray
    flat_keys: np.ndarray
    flat_counts: np.ndarray
    colour: bool
    lossy: bool
    objects: int | None = None  # the object count when the mask may be an instance label image (one id per object)
    regions: int | None = None  # its separate regions (4-connected), beside `objects`: ids split into several


def _keys(raw: np.ndarray) -> np.ndarray:
    if raw.ndim == 2:
        return raw.astype(np.int64)
    rgb = raw.astype(np.int64)
    return (rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]) | _COLOUR_FLAG


def histogram(raw: np.ndarray, lossy: bool) -> MaskHistogram:
    every = _keys(raw)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(raw, kernel).astype(np.int64) - cv2.erode(raw, kernel)
    flat = (spread.max(axis=2) if raw.ndim == 3 else spread) <= FLAT_TOLERANCE
    keys, counts = _count(every)
    flat_keys, flat_counts = _count(every[flat])
    return MaskHistogram(keys, counts, flat_keys, flat_counts, raw.ndim == 3, lossy)


def _count(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if keys.size and keys.max() < _COLOUR_FLAG:  # gray values: counting by bincount is far faster than sorting
        counts = np.bincount(keys.ravel())
        present = np.flatnonzero(counts)
        return present.astype(np.int64), counts[present]
    return np.unique(keys, return_counts=True)


def _merge(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    merged, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    return merged, np.bincount(inverse, weights=np.concatenate(counts), minlength=len(merged)).astype(np.int64)


def _as_colour(keys: np.ndarray) -> np.ndarray:
    """Gray keys as packed gray colours (16-bit ones scaled to 8), so gray and colour masks share one set of classes."""
    gray = np.where(keys > 255, keys >> 8, keys) & 255
    return np.where(keys & _COLOUR_FLAG, keys, (gray * 0x010101) | _COLOUR_FLAG)


def _points(keys: np.ndarray, colour: bool) -> np.ndarray:
    if not colour:
        return keys[:, None].astype(np.float64)
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.float64)


def _peaks(keys: np.ndarray, counts: np.ndarray, colour: bool) -> list[int]:
    """Indices of the keys that are the centres of well-populated, well-separated histogram peaks.

    Noise spreads one class over many nearby values, so counts are first pooled in coarse bins; each bin is
    represented by its most common exact value, and bins closer than the noise radius to a bigger one are dropped.
    """
    points = _points(keys, colour)
    bins = (points // (COLOUR_BIN if colour else GRAY_BIN)).astype(np.int64) @ (1 << np.arange(points.shape[1]) * 8)
    _, inverse = np.unique(bins, return_inverse=True)
    bin_counts = np.bincount(inverse, weights=counts)
    order = np.argsort(-counts, kind="stable")
    _, first = np.unique(inverse[order], return_index=True)
    modes = order[first]  # the most common key of each bin
    radius = COLOUR_NOISE_RADIUS if colour else GRAY_NOISE_RADIUS
    centres: list[int] = []
    for b in np.argsort(-bin_counts, kind="stable"):
        if bin_counts[b] < PEAK_MIN_FRACTION * counts.sum() or len(centres) > MAX_CLASSES:
            break
        if all(np.linalg.norm(points[modes[b]] - points[c]) > radius for c in centres):
            centres.append(int(modes[b]))
    return centres


def find_levels(hist: MaskHistogram) -> np.ndarray | None:
    """The values that are real classes, or None when there are too many to be classes."""
    if len(hist.keys) <= MAX_CLASSES and not hist.lossy:
        return hist.keys
    if (not hist.colour and hist.keys.max() > 255) or not len(hist.flat_keys):
        return None  # 16-bit masks are never JPEGs: their many values are real (e.g. instance labels)
    centres = _peaks(hist.flat_keys, hist.flat_counts, hist.colour)
    if not centres or len(centres) > MAX_CLASSES:
        return None
    if not hist.lossy and hist.flat_counts[centres].sum() < EXACT_MIN_FRACTION * hist.flat_counts.sum():
        return None
    return np.sort(hist.flat_keys[centres])


INSTANCE_MIN_IDS = 4  # 8-bit masks need this many ids to be taken for instance labels (16-bit ones need 2)
INSTANCE_REGION_SLACK = 1.25  # regions per id allowed (an object cut in two by a thin gap is still one id)
INSTANCE_REGION_LIMIT = 3.0  # one mask whose ids average more regions than this is not read as ids on its own


class MaskReading(StrEnum):
    """How gray masks with many values are read: decided over the whole dataset, or as the user says."""

    AUTO = "auto"  # object ids when the masks together look like instance labels (see `plan_classes`)
    IDS = "ids"  # instance label images: 0 background, every other value one object of the class 'object'
    CLASSES = "classes"  # every value is a class


MASK_READINGS = tuple(m.value for m in MaskReading)


def mask_reading(value: str | None) -> MaskReading:
    """'auto' (also None), 'ids' or 'classes'; UserError naming the choices for anything else."""
    try:
        return MaskReading(value or MaskReading.AUTO)
    except ValueError:
        raise UserError(f"masks are read as 'auto', 'ids' (object ids) or 'classes', not '{value}'") from None


def instance_counts(raw: np.ndarray, said: bool = False) -> tuple[int, int] | None:
    """(ids, separate regions) of a mask that could be an instance label image, else None.

    Candidates are gray integer masks on a 0 background: 16-bit with two or more ids, 8-bit with INSTANCE_MIN_IDS
    or more (so a 3-class mask with one blob per class stays a class mask); any number of ids when the user `said`
    the masks are ids.
    """
    from skimage.measure import label  # scikit-image: labels regions of equal value in one pass

    if raw.ndim != 2 or lossy_dtype(raw) or not raw.size or raw.min() != 0:
        return None
    ids = np.unique(raw)
    ids = ids[ids != 0]
    if len(ids) < (1 if said else 2 if raw.dtype == np.uint16 else INSTANCE_MIN_IDS):
        return None
    return len(ids), int(label(raw, background=0, connectivity=1).max())


def instance_objects(raw: np.ndarray) -> int | None:
    """The number of objects when `raw`, on its own, is an instance label image, else None.

    Instance labels (what Cellpose, StarDist, ilastik and QuPath export) paint each object with its own id on a
    0 background, so nearly every id is one connected region; a class-index mask paints each class in many
    separate regions. A dataset decides over all its masks at once (`plan_classes`), where one mask with split
    ids does not outvote the rest.
    """
    counts = instance_counts(raw)
    if counts is None:
        return None
    ids, regions = counts
    return ids if regions <= INSTANCE_REGION_SLACK * ids + 1 else None


def with_instance_counts(hist: MaskHistogram, raw: np.ndarray, reading: MaskReading = MaskReading.AUTO
                         ) -> MaskHistogram:
    """`hist` with its object and region counts when the mask may be read as object ids under `reading`:
    any candidate when the user said 'ids', none when 'classes', and on 'auto' a candidate whose ids are not
    split beyond INSTANCE_REGION_LIMIT regions each (a picture of noise is no label image)."""
    if reading == MaskReading.CLASSES or raw.ndim != 2 or len(hist.keys) <= 2:
        return hist
    counts = instance_counts(raw, said=reading == MaskReading.IDS)
    if counts is None:
        return hist
    ids, regions = counts
    if reading == MaskReading.AUTO and regions > INSTANCE_REGION_LIMIT * ids + 1:
        return hist
    return dataclasses.replace(hist, objects=ids, regions=regions)


def lossy_dtype(raw: np.ndarray) -> bool:
    return raw.dtype.kind == "f"


def too_many_values(hist: MaskHistogram, reading: MaskReading | str | None = None) -> str | None:
    """A plain reason when one mask alone holds more values than a mask can have classes (and is not read as
    object ids: `with_instance_counts` gave it its object count)."""
    if hist.objects is not None or find_levels(hist) is not None:
        return None
    what = "colours" if hist.colour else "values"
    said = " and the masks are read as classes" if mask_reading(reading) == MaskReading.CLASSES else ""
    return (
        f"has {len(hist.keys)} different {what}{said}; a mask paints each class in one value or colour, "
        f"at most {MAX_CLASSES} classes (is this an image rather than a mask?)"
    )


@dataclass(frozen=True)
class MaskPlan:
    """The classes of a dataset and how to turn any of its masks into class indices."""

    levels: np.ndarray  # one key per class, in class order (background first)
    colour: bool
    kind: MaskKind
    snapped: bool  # True when noise was snapped to the nearest class
    extra_foreground: bool = False  # every mask was background only; a foreground class is added
    soft_edge_values: tuple[int, ...] = ()  # values found only along borders, assigned to the nearest class
    merged_foreground: tuple[int, ...] = ()  # binary masks painting the foreground in different values (1, 255)
    ignore: int | None = None  # VOC-style "not labelled" value (255 beside class numbers 0..k)
    instances: bool = False  # instance label images: every id > 0 is one object of the one foreground class

    @property
    def num_classes(self) -> int:
        return len(self.levels) + int(self.extra_foreground)

    def class_infos(self, pixels: np.ndarray) -> list[dict]:
        """Default names and colours: the mask's own colours for colour masks, else the fixed palette."""
        infos = []
        for index in range(self.num_classes):
            if self.kind == MaskKind.BINARY:
                name = "background" if index == 0 else "foreground"
            else:
                name = "background" if index == 0 else f"class {index}"
            if self.colour and index < len(self.levels):
                key = int(self.levels[index])
                color = [(key >> 16) & 255, (key >> 8) & 255, key & 255]
                value: object = "#{:02x}{:02x}{:02x}".format(*color)
            else:
                color = list(PALETTE[index % len(PALETTE)])
                value = int(self.levels[index]) if index < len(self.levels) else None
            infos.append({"index": index, "name": name, "pixels": int(pixels[index]), "color": color, "value": value})
        return infos


def _mixed_binary(hists: list[MaskHistogram]) -> tuple[int, ...]:
    """The foreground values when every mask is gray 0 plus one value but the masks disagree on it (0/1 and 0/255)."""
    if any(h.colour or h.lossy for h in hists):
        return ()
    foreground = set()
    for h in hists:
        nonzero = [int(k) for k in h.keys if k != 0]
        if len(nonzero) > 1:
            return ()
        foreground.update(nonzero)
    return tuple(sorted(foreground)) if len(foreground) > 1 else ()


SOFT_EDGE_FLAT_SHARE = 0.05  # a value with less than this share of its pixels in flat regions lives on borders


def _soft_edge_values(keys: np.ndarray, counts: np.ndarray, flat_keys: np.ndarray, flat_counts: np.ndarray,
                      colour: bool) -> np.ndarray:
    """Values of a lossless mask that appear only along borders, between the real classes: a mask shrunk or
    smoothed with interpolation (0/64/128/191/255 from a 0/255 mask). Two or more are needed, so a thin real class
    (a one-pixel boundary class between two others) is never taken for one."""
    flat = dict(zip(flat_keys.tolist(), flat_counts.tolist(), strict=True))
    edge = np.array([flat.get(int(k), 0) < SOFT_EDGE_FLAT_SHARE * c for k, c in zip(keys, counts, strict=True)])
    core = keys[~edge]
    if edge.sum() < 2 or len(core) < 2:
        return keys[:0]
    points, low, high = _points(keys[edge], colour), _points(core, colour).min(0), _points(core, colour).max(0)
    if not np.all((points >= low) & (points <= high)):
        return keys[:0]
    return keys[edge]


VOID = 255  # the value VOC-style index masks paint unlabelled borders with


def _void_value(hists: list[MaskHistogram], keys: np.ndarray, colour: bool, lossy: bool) -> int | None:
    """255 when it sits beside class numbers 0..k (k >= 1), in the same masks as a class other than 0: VOC's
    "not labelled", not a class. A 0/255 binary mask, or 0/1 masks mixed with 0/255 ones, keep 255 a class."""
    if colour or lossy or VOID not in keys:
        return None
    others = [int(k) for k in keys if k != VOID]
    if len(others) < 2 or others != list(range(len(others))):
        return None
    beside_a_class = any(VOID in h.keys and np.any((h.keys != 0) & (h.keys != VOID)) for h in hists)
    return VOID if beside_a_class else None


def _fits_ids(h: MaskHistogram) -> bool:
    """A mask that reads as object ids: a candidate, or gray with at most one object (0 and one id)."""
    if h.colour or h.lossy:
        return False
    return h.objects is not None or (len(h.keys) <= 2 and (not len(h.keys) or h.keys[0] == 0))


def split_ids(hists: list[MaskHistogram]) -> tuple[int, int, int]:
    """(masks whose ids are split into separate regions beyond INSTANCE_REGION_SLACK, their ids, their regions)."""
    split = [h for h in hists if h.objects is not None and h.regions is not None
             and h.regions > INSTANCE_REGION_SLACK * h.objects + 1]
    return len(split), sum(h.objects or 0 for h in split), sum(h.regions or 0 for h in split)


def _instance_dataset(hists: list[MaskHistogram], reading: MaskReading = MaskReading.AUTO) -> bool:
    """True when the masks are instance label images, decided over the whole dataset.

    'ids': every mask must fit (UserError otherwise: colour or JPEG masks hold no ids). 'auto': some masks are
    candidates, every mask fits, and over all candidates together the ids are hardly split (at most
    INSTANCE_REGION_SLACK regions per id, plus one per mask), so one mask with split ids does not turn a dataset
    of label images into classes.
    """
    if reading == MaskReading.CLASSES:
        return False
    if reading == MaskReading.IDS:
        if not all(_fits_ids(h) for h in hists):
            raise UserError("the masks were to be read as object ids, but some are colour pictures, JPEGs or "
                            "have no background 0, which instance labels always have; read them as classes")
        return True
    candidates = [h for h in hists if h.objects is not None]
    if not candidates or not all(_fits_ids(h) for h in hists):
        return False
    ids = sum(h.objects or 0 for h in candidates)
    regions = sum(h.regions if h.regions is not None else h.objects or 0 for h in candidates)
    return regions <= INSTANCE_REGION_SLACK * ids + len(candidates)


def plan_classes(hists: list[MaskHistogram], reading: MaskReading | str | None = None) -> MaskPlan:
    """Decide the classes from every usable mask at once; UserError when they cannot be classes.

    `reading` ('auto', 'ids' or 'classes', `MaskReading`) says whether gray masks of many values are object ids;
    on 'auto' (None) the masks decide together (`_instance_dataset`).
    """
    if not hists:
        raise UserError("there are no readable masks")
    reading = mask_reading(reading)
    if _instance_dataset(hists, reading):  # background and one "object" class; the ids are kept for the objects
        return MaskPlan(np.array([0, 1], np.int64), False, MaskKind.BINARY, snapped=False, instances=True)
    colour = any(h.colour for h in hists)
    recode = _as_colour if colour else (lambda keys: keys)
    keys, counts = _merge([recode(h.keys) for h in hists], [h.counts for h in hists])
    flat_keys, flat_counts = _merge([recode(h.flat_keys) for h in hists], [h.flat_counts for h in hists])
    ignore = _void_value(hists, keys, colour, any(h.lossy for h in hists))
    if ignore is not None:
        keep = keys != ignore
        keys, counts = keys[keep], counts[keep]
        flat_keep = flat_keys != ignore
        flat_keys, flat_counts = flat_keys[flat_keep], flat_counts[flat_keep]
    merged = _mixed_binary(hists) if ignore is None else ()
    soft = np.zeros(0, np.int64)
    if merged:  # one foreground class, painted in its most common value
        foreground = max(merged, key=lambda v: counts[np.searchsorted(keys, v)])
        levels: np.ndarray | None = np.array([0, foreground], np.int64)
    else:
        lossy = any(h.lossy for h in hists)
        if not lossy and len(keys) <= MAX_CLASSES:
            soft = _soft_edge_values(keys, counts, flat_keys, flat_counts, colour)
        kept = np.setdiff1d(keys, soft) if len(soft) else keys
        levels = find_levels(MaskHistogram(kept, counts[np.isin(keys, kept)], flat_keys, flat_counts, colour, lossy))
    if levels is None:
        what = "colours" if colour else "values"
        ids = "" if colour or reading == MaskReading.IDS else "; if the values are object ids, read the masks as ids"
        raise UserError(
            f"the masks together hold {len(keys)} different {what}, more than the {MAX_CLASSES} classes a model "
            f"can learn; each class must be painted in one value or colour{ids}"
        )
    background = _COLOUR_FLAG if colour else 0  # black, or value 0
    if background not in levels:  # else the level of the most common value
        top = _points(keys[[np.argmax(counts)]], colour)
        background = int(levels[np.argmin(((_points(levels, colour) - top) ** 2).sum(axis=1))])
    ordered = np.array([background] + [int(k) for k in levels if k != background], np.int64)
    kind = MaskKind.BINARY if len(ordered) <= 2 else (MaskKind.COLOUR if colour else MaskKind.INDEX)
    return MaskPlan(ordered, colour, kind, snapped=len(levels) < len(keys) and not merged,
                    extra_foreground=len(ordered) == 1, soft_edge_values=tuple(int(v) for v in soft),
                    merged_foreground=merged, ignore=ignore)
