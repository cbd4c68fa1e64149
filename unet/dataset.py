"""A user's images and masks, checked and stored as a clean dataset in the workspace.

`inspect_source` checks a folder or zip and says in plain words what is wrong; `ingest` stores the usable pairs
in the layout of docs/CONTRACTS.md (8-bit PNG images, masks of class indices, `dataset.json`); `Dataset` reads a
stored one back. Finding and pairing files is in `unet.pairing`, decoding masks in `unet.masks`, unpacking zips
in `unet.zipsafe`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from unet import atomic, intensity
from unet import images as image_io
from unet import stacks as stacks_module
from unet.classmap import IGNORE_INDEX, ClassMap
from unet.dataset_check import DatasetReport, Problem
from unet.errors import UserError
from unet.intensity import Intensity
from unet.masks import (
    MaskHistogram,
    MaskReading,
    histogram,
    mask_reading,
    plan_classes,
    split_ids,
    too_many_values,
    with_instance_counts,
)
from unet.pairing import Pair, find_layout, mask_base, pair_files, stored_stem
from unet.stacks import StackRule
from unet.workspace import child, safe_name
from unet.zipsafe import MAX_MEMBERS, extract_zip, is_junk

DATASET_FILE = "dataset.json"
WHOLE_DATASET = "(whole dataset)"  # the file column of a problem that concerns no single file
UNLABELLED = "unlabelled"  # images stored without a mask, waiting to be annotated
MIN_PAIRS = 4  # fewer than this and training can hardly hold any images out for validation
Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


@dataclass
class _Unit:
    """One 2D image of the dataset: a whole file, or one plane (or the projection) of a stack."""

    pair: Pair
    plane: int | None  # the plane of the stack, or None for a single image or a projection
    stem: str  # the stored stem
    channels: int
    shape: tuple[int, int]
    hist: MaskHistogram
    dtype: str  # uint8, uint16 or float32, as read
    bits: int  # the bit depth that holds its brightest value (8 for uint8)

    @property
    def label(self) -> str:
        """How problems and object counts name it: the mask file, and the plane when it is one of a stack."""
        return self.pair.mask_label + (f" [plane {self.plane + 1}]" if self.plane is not None else "")


@dataclass
class _Checked:
    """What checking a source found, beyond the report: the usable images and how to store them."""

    report: DatasetReport
    units: list[_Unit] = field(default_factory=list)
    class_map: ClassMap | None = None
    lossy: dict[str, bool] = field(default_factory=dict)  # per mask label: JPEG, whose noise snaps to a class
    source_bits: int = 8  # the bit depth of the images, over the whole dataset: one scaling rule for all
    test_stems: list[str] = field(default_factory=list)  # from the test part of a train/test tree
    channels: int = 1
    stack_rule: StackRule = field(default_factory=StackRule)
    dtype: str = "uint8"  # what the stored images hold
    intensity: Intensity | None = None

    @property
    def pairs(self) -> list[Pair]:
        return list(dict.fromkeys(unit.pair for unit in self.units))


class _Samples:
    """Pixel samples of every image for the percentile rule, thinned as they come so memory stays bounded."""

    BUDGET = 8_000_000  # values kept in all (about 16 MB of 16-bit pixels)

    def __init__(self) -> None:
        self.kept: dict[str, np.ndarray] = {}
        self.limit = intensity.SAMPLES_PER_IMAGE

    def add(self, stem: str, image: np.ndarray, replaced: np.ndarray | None = None) -> None:
        """Sample `image`; pixels `replaced` (bool [H, W]: NaN or infinite in the file) are left out."""
        if replaced is not None and replaced.any():
            image = image.reshape(-1, 1, image.shape[-1] if image.ndim == 3 else 1)[~replaced.ravel()]
        self.kept[stem] = intensity.sample_pixels(image, self.limit)
        if sum(s.size for s in self.kept.values()) > self.BUDGET:
            self.kept = {k: v[::2] for k, v in self.kept.items()}
            self.limit = max(1000, self.limit // 2)


# --- checking a source ----------------------------------------------------------------------------------------


def _read_pair(pair: Pair, report: DatasetReport) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Every plane of the image ([P, H, W, C]) and of the mask, and where the image's NaN or infinite pixels
    were made finite ([P, H, W] bool, None when none: said in the report); None after reporting why the pair is
    unusable."""
    try:
        image_hw = image_io.check_pixels(pair.image)
        image, non_finite = image_io.read_planes_checked(pair.image)
    except UserError as exc:
        report.add(pair.image_label, str(exc))
        return None
    try:
        mask_hw = image_io.check_pixels(pair.mask)
        if mask_hw != image_hw:
            raise UserError(
                f"mask '{pair.mask.name}' is {mask_hw[1]}x{mask_hw[0]} but its image is {image_hw[1]}x{image_hw[0]}"
            )
        mask = image_io.read_mask_planes(pair.mask)
        if mask.shape[1:3] != image.shape[1:3]:
            raise UserError(f"mask '{pair.mask.name}' and its image are turned differently (EXIF orientation)")
    except UserError as exc:
        report.add(pair.mask_label, str(exc))
        return None
    if non_finite is not None:
        report.add(pair.image_label, non_finite.describe(), False)
    return image, mask, None if non_finite is None else non_finite.where


def _units_of(pair: Pair, rule: StackRule, report: DatasetReport, samples: _Samples,
              stacks: Counter, reading: MaskReading = MaskReading.AUTO) -> list[_Unit]:
    """The 2D images one file pair gives under `rule`, with their mask histograms; problems reported."""
    found = _read_pair(pair, report)
    if found is None:
        return []
    image, mask, replaced = found
    try:
        mode, planes = stacks_module.resolve(image, mask, rule, pair.image.name, pair.mask.name)
    except UserError as exc:
        report.add(pair.image_label, str(exc))
        return []
    if image.shape[0] > 1:
        stacks[(image.shape[0], mode)] += 1
    units = []
    for plane, pixels, raw in planes:
        assert raw is not None
        hist = with_instance_counts(histogram(raw, image_io.is_lossy(pair.mask)), raw, reading)
        stem = stored_stem(pair.stem) + (f"-p{plane + 1:03d}" if plane is not None else "")
        label = pair.mask_label + (f" [plane {plane + 1}]" if plane is not None else "")
        reason = too_many_values(hist, reading)
        if reason:
            report.add(label, f"mask '{pair.mask.name}' {reason}")
            continue
        samples.add(stem, pixels, None if replaced is None else replaced[plane] if plane is not None else
                    replaced.any(axis=0))  # a projection: a pixel replaced in any plane
        bits = 8 if pixels.dtype == np.uint8 else image_io.bits_of(pixels) if pixels.dtype.kind in "ui" else 32
        units.append(_Unit(pair, plane, stem, image_io.channels_of(pixels), pixels.shape[:2], hist,
                           pixels.dtype.name, bits))
    return units


@dataclass(frozen=True)
class ValueChoices:
    """What the user says the mask values mean (`python -m unet inspect/train --background/--ignore-value`, the
    Dataset page): which value is the background ("auto", a gray value, or "none") and which values mean
    "not labelled" (left out of the loss, the scores and the pictures)."""

    background: str = "auto"
    ignore: tuple[int, ...] = ()

    @classmethod
    def parse(cls, background: str | int | None = "auto", ignore: Sequence[int] = ()) -> ValueChoices:
        text = "auto" if background is None else str(background).strip().lower()
        if text not in ("auto", "none") and not text.isdigit():
            raise UserError(f"the background must be a mask value (a whole number), 'none' or 'auto', not "
                            f"'{background}'")
        if any(not 0 <= int(v) <= 65535 for v in ignore):
            raise UserError("a 'not labelled' value must be a mask value from 0 to 65535")
        return cls(text, tuple(dict.fromkeys(int(v) for v in ignore)))


def _apply_choices(class_map: ClassMap, kept: list[_Unit], report: DatasetReport,
                   values: ValueChoices) -> ClassMap:
    """The planned map with the user's (or the data's) background and "not labelled" values.

    Background by default: the class of value 0 when it is the most common value over all masks (nuclei on a dark
    field, cells in a plate); else none, and every class is scored (street scenes, where 0 is sky and road is
    more common; EM membranes, where cells cover most pixels). A value said to be the background becomes class 0.
    """
    if class_map.instances or class_map.colour:
        return class_map
    ignored = [v for v in values.ignore if v in [e.value for e in class_map.entries] or v == class_map.ignore]
    for value in values.ignore:
        if value not in ignored:
            report.add("", f"the value {value} was given as \"not labelled\", but no mask has it", False)
    entries = [e for e in class_map.entries if e.value not in ignored]
    if len(entries) < 2:
        raise UserError("with those values not labelled, fewer than two classes are left to learn")
    pixels: Counter = Counter()
    for unit in kept:
        pixels.update(dict(zip(unit.hist.keys.tolist(), unit.hist.counts.tolist(), strict=True)))
    by_value = {e.value: e for e in entries}
    if values.background == "none":
        background = None
    elif values.background == "auto":
        common = max(by_value, key=lambda v: pixels.get(v, 0) if isinstance(v, int) else -1)
        background = 0 if 0 in by_value and common == 0 else None
    else:
        background = int(values.background)
        if background not in by_value:
            raise UserError(f"the background value {background} is not one of the mask values "
                            f"({', '.join(str(v) for v in by_value)})")
    if background is not None:
        entries = [by_value[background]] + [e for e in entries if e.value != background]
    records = [{"index": i, "name": e.name, "color": list(e.color), "value": e.value} for i, e in enumerate(entries)]
    if background is not None and records[0]["name"].startswith("class "):
        records[0]["name"] = "background"
    if background is None and records[0]["name"] == "background":
        records[0]["name"] = f"class {records[0]['value']}"
    ignore = [*([class_map.ignore] if class_map.ignore is not None else []), *ignored]
    choices = ClassMap.from_records(records, class_map.soft_edges, ignore[0] if ignore else None, False,
                                    0 if background is not None else None, ignore[1:])
    assert choices is not None
    if ignored:
        report.add("", f"the value{'s' if len(ignored) > 1 else ''} {' and '.join(map(str, ignored))} "
                       f"mean{'' if len(ignored) > 1 else 's'} \"not labelled\" (as you said): those pixels are "
                       "left out of training, of every score and of the pictures", False)
    if background is None:
        report.add("", "no value is the background: every class is learned and scored alike, and the headline "
                       "figure is the mean over all classes (say which value is the background if one is)", False)
    return choices


def _plan(kept: list[_Unit], report: DatasetReport, reading: MaskReading = MaskReading.AUTO,
          values: ValueChoices | None = None) -> ClassMap | None:
    """The class map decided from the masks themselves (a new dataset), with warnings on how values were read,
    and the user's background and "not labelled" values (`ValueChoices`).

    Palette PNG masks are read as their indices; the classes take the palette's colours for display.
    """
    try:
        plan = plan_classes([unit.hist for unit in kept], reading)
    except UserError as exc:
        report.add("", str(exc))
        return None
    if plan.soft_edge_values:
        shown = ", ".join(str(v) for v in plan.soft_edge_values[:6])
        report.add("", f"the masks have soft edges: the values {shown} appear only along the borders between "
                       "classes (a mask resized or smoothed with interpolation); each such pixel was given to the "
                       "nearest class", False)
    if plan.merged_foreground:
        shown = " and ".join(f"0/{v}" for v in plan.merged_foreground)
        report.add("", f"the masks mark the foreground in different values ({shown}); all were read as the same "
                       "foreground class", False)
    if plan.extra_foreground:
        report.add("", "no mask has any foreground: every mask is all background, so there is nothing to learn", False)
    if plan.instances:
        said = " (as you said)" if reading == MaskReading.IDS else ""
        report.add("", f"the masks are instance labels{said} (one id per object, as Cellpose, StarDist, ilastik and "
                       "QuPath write them): each object is learned as the class 'object', and the ids are kept to "
                       "count and separate objects", False)
        split, ids, regions = split_ids([unit.hist for unit in kept])
        if split:
            report.add("", f"in {split} mask{'s' if split != 1 else ''} some ids are painted in several separate "
                           f"places ({regions} regions for {ids} ids); each id is still one object. If the values "
                           "are classes, not ids, read the masks as classes", False)
    if plan.ignore is not None:
        report.add("", f"the value {plan.ignore} beside the class numbers is read as \"not labelled\" (as in "
                       "VOC-style masks): those pixels are left out of training and of every score", False)
    blank = plan.class_infos(np.zeros(plan.num_classes, np.int64))
    if plan.instances:
        blank[1].update(name="object", value=None)
    palette = image_io.mask_palette(kept[0].pair.mask)
    for record in blank if palette and not plan.colour else []:
        if isinstance(record["value"], int) and record["value"] < len(palette):
            record["color"] = list(palette[record["value"]])
    planned = ClassMap.from_records(blank, soft_edges=bool(plan.soft_edge_values), ignore=plan.ignore,
                                    instances=plan.instances)
    if planned is None:
        return None
    try:
        return _apply_choices(planned, kept, report, values or ValueChoices())
    except UserError as exc:
        report.add("", str(exc))
        return None


def _check_folder(folder: Path, progress: Progress, start: float, end: float,
                  class_map: ClassMap | None = None, rule: StackRule | None = None,
                  reading: MaskReading = MaskReading.AUTO, values: ValueChoices | None = None) -> _Checked:
    """Check every pair; with `class_map` (a run's classes), masks must use its values, else the map is planned
    (`reading`: whether gray masks of many values are object ids, `unet.masks.MaskReading`)."""
    checked = _Checked(DatasetReport(), stack_rule=rule or StackRule())
    report = checked.report
    try:
        layout = find_layout(folder)
    except UserError as exc:
        report.add("", str(exc))
        return checked
    report.layout = layout.name
    pairs = pair_files(layout.images, layout.masks, report)
    test_stems: set[str] = set()
    if layout.test is not None:  # a train/test tree: its test part becomes the test set, names kept apart
        taken = {pair.stem for pair in pairs}
        for pair in pair_files(*layout.test, report):
            stem = pair.stem if pair.stem not in taken else f"test-{pair.stem}"
            pairs.append(Pair(stem, pair.image, pair.mask))
            test_stems.add(stem)
    kept: list[_Unit] = []
    samples, stacks = _Samples(), Counter()
    for i, pair in enumerate(pairs):
        progress(start + (end - start) * i / max(len(pairs), 1), f"Checking {pair.image.name}")
        kept += _units_of(pair, checked.stack_rule, report, samples, stacks,
                          MaskReading.AUTO if class_map is not None else reading)
    if not kept:
        return checked
    kept = _agree_on_channels(kept, report)
    checked.channels = kept[0].channels if kept else 1
    checked.source_bits = _source_bits([u.bits for u in kept if u.dtype != "float32"], report)
    checked.dtype = _stored_dtype(kept)
    given = class_map is not None  # a run's classes: the masks are read with its values, not planned
    class_map = class_map or _plan(kept, report, reading, values)
    if class_map is None:
        return checked
    totals = np.zeros(class_map.num_classes, np.int64)
    usable = []
    for unit in kept:
        hist = unit.hist
        index, unknown = class_map.lookup(hist.keys, hist.lossy)
        if unknown:
            report.add(unit.label, class_map.unknown_message(unit.pair.mask.name, unknown))
            continue
        if given:
            for note in class_map.stand_in_notes(hist.keys, index, f"mask '{unit.pair.mask.name}'", hist.lossy):
                report.add(unit.label, note, False)
        labelled = index != IGNORE_INDEX
        pixels = np.bincount(index[labelled], weights=hist.counts[labelled],
                             minlength=class_map.num_classes).astype(np.int64)
        totals += pixels
        usable.append(unit)
        if all(e.value is not None for e in class_map.entries) and pixels[1:].sum() == 0:
            report.add(unit.label, f"mask '{unit.pair.mask.name}' has no foreground (all background); kept", False)
    if not usable:
        return checked
    if len(usable) < MIN_PAIRS:
        report.add("", f"only {len(usable)} usable pairs; at least {MIN_PAIRS} are needed to train and validate", False)
    sizes = [unit.shape for unit in usable]
    report.image_sizes = {"min": list(min(sizes)), "max": list(max(sizes)), "distinct": len(set(sizes))}
    report.pairs, report.channels = len(usable), checked.channels
    report.mask_kind = _mask_kind(class_map)
    report.classes = [dict(record, pixels=int(totals[record["index"]])) for record in class_map.records()]
    if class_map.instances:
        report.objects = {unit.label: (unit.hist.objects if unit.hist.objects is not None
                                       else int((unit.hist.keys > 0).sum())) for unit in usable}
    checked.units, checked.class_map = usable, class_map
    checked.test_stems = sorted(unit.stem for unit in usable if unit.pair.stem in test_stems)
    report.test_pairs = len(checked.test_stems)
    checked.lossy = {unit.pair.mask_label: unit.hist.lossy for unit in usable}
    checked.intensity = _intensity_rule(checked, samples)
    report.found = _found(usable, stacks, checked)
    report.intensity = checked.intensity.describe()
    return checked


def _agree_on_channels(units: list[_Unit], report: DatasetReport) -> list[_Unit]:
    """The units whose channels match the majority's; grayscale and RGB convert into each other, others are
    left out by name (a 2-channel stain cannot become RGB)."""
    counts = Counter(unit.channels for unit in units)
    channels = max(counts, key=lambda c: (counts[c], c == 3, c))  # RGB on a 1-vs-3 tie: it loses nothing
    converted = [u for u in units if u.channels != channels and image_io.convertible(u.channels, channels)]
    refused = [u for u in units if not image_io.convertible(u.channels, channels)]
    for unit in refused:
        report.add(unit.pair.image_label, f"'{unit.pair.image.name}' has {unit.channels} channels but most images "
                                          f"have {channels}; every image of a dataset needs the same channels")
    if converted:
        had, now = ("colour", "grayscale") if channels == 1 else ("grayscale", "colour (RGB)")
        names = list(dict.fromkeys(u.pair.image.name for u in converted))
        listed = ", ".join(f"'{n}'" for n in names[:5]) + (" and more" if len(names) > 5 else "")
        report.add("", f"{len(names)} of {len({u.pair for u in units})} images are {had} and were converted to {now} "
                       f"like the rest: {listed}", False)
    for unit in converted:
        unit.channels = channels
    return [u for u in units if u not in refused]


def _stored_dtype(units: list[_Unit]) -> str:
    """What the stored images hold: float32 if any image is float, uint16 if any is deeper than 8 bits, else uint8."""
    kinds = {unit.dtype for unit in units}
    return "float32" if "float32" in kinds else "uint16" if "uint16" in kinds else "uint8"


def _intensity_rule(checked: _Checked, samples: _Samples) -> Intensity:
    """value / 255 for 8-bit data; the dataset's percentiles per channel for deeper or float data."""
    if checked.dtype == "uint8":
        return Intensity.fixed(checked.channels)
    pooled = []
    for unit in checked.units:
        sample = samples.kept[unit.stem].astype(np.float64)
        if unit.dtype == "uint8" and checked.dtype == "uint16":  # as `stored_pixels` will scale it
            sample = sample * ((2**checked.source_bits - 1) / 255.0)
        pooled.append(_sample_channels(sample, checked.channels))
    return Intensity.from_samples(pooled)


def _sample_channels(sample: np.ndarray, channels: int) -> np.ndarray:
    """Samples of a grayscale image as RGB (repeated) or of an RGB one as gray (mean), to pool with the rest."""
    if channels == 3 and sample.shape[-1] == 1:
        return np.repeat(sample, 3, axis=1)
    if channels == 1 and sample.shape[-1] == 3:
        return sample.mean(axis=1, keepdims=True)
    return sample[:, :channels]


def _found(units: list[_Unit], stacks: Counter, checked: _Checked) -> str:
    """What was found, in plain words: '12 stacks of 25 planes (each slice an image): 300 images, 2 channels,
    16-bit'."""
    depth = "32-bit float" if checked.dtype == "float32" else f"{checked.source_bits}-bit"
    channel_words = "1 channel" if checked.channels == 1 else f"{checked.channels} channels"
    parts = []
    for (planes, mode), count in sorted(stacks.items()):
        how = {"slices": "each slice an image", "max": "maximum projection", "mean": "mean projection"}.get(
            mode, checked.stack_rule.describe())
        parts.append(f"{count} stack{'s' if count != 1 else ''} of {planes} planes ({how})")
    single = len({u.pair for u in units}) - sum(stacks.values())
    if single > 0:
        parts.insert(0, f"{single} single image{'s' if single != 1 else ''}")
    return f"{', '.join(parts)}: {len(units)} images to train on, {channel_words}, {depth}"


def _source_bits(depths: list[int], report: DatasetReport) -> int:
    """One bit depth for the whole dataset (the deepest image's), said in plain words when it is over 8."""
    bits = max(depths, default=8)
    if bits > 8:
        report.add("", f"the images hold up to {bits}-bit values; they are stored as they are (16-bit), and one "
                       "rule for the whole dataset scales them for the network (see 'Intensity')", False)
    return bits


def _mask_kind(class_map: ClassMap) -> str:
    if class_map.instances:
        return "instances"
    if class_map.num_classes <= 2:
        return "binary"
    return "colour" if class_map.colour else "index"


def _open_source(source: Path, scratch: Path, label: str) -> tuple[Path, list]:
    """A folder to check: `source` itself, or the zip unpacked into `scratch`, with the zip's own problems."""
    if source.is_dir():
        return source, []
    if not source.is_file():
        raise UserError(f"'{label}' was not found")
    return scratch, extract_zip(source, scratch, label=label)


def _check_source(source: Path, scratch: Path, progress: Progress, end: float, label: str | None = None,
                  class_map: ClassMap | None = None, rule: StackRule | None = None, masks: str | None = None,
                  values: ValueChoices | None = None) -> _Checked:
    """Open and check a source; `masks` is 'auto' (None), 'ids' or 'classes' (`unet.masks.MaskReading`)."""
    reading = mask_reading(masks)  # a wrong word is refused before anything is read
    label = Path(label).name if label else source.name
    progress(0.0, f"Opening {label}")
    folder, zip_problems = _open_source(source, scratch, label)
    checked = _check_folder(folder, progress, 0.1, end, class_map, rule, reading, values)
    checked.report.problems[:0] = zip_problems
    checked.report.problems = [  # problems of the whole source name it, warnings about the whole dataset say so
        p if p.file else Problem(label if p.skipped else WHOLE_DATASET, p.problem, p.skipped)
        for p in checked.report.problems
    ]
    return checked


def inspect_source(path: str | Path, progress: Progress | None = None, label: str | None = None,
                   stacks: str | StackRule | None = None, masks: str | None = None,
                   values: ValueChoices | None = None) -> DatasetReport:
    """Check a folder or zip without storing anything; every problem is in the report, never raised.

    `label` is the name the user knows the source by (an upload's own name), used in messages; `stacks` how
    multi-plane TIFFs become 2D images (`unet.stacks`; automatic by default); `masks` how gray masks of many
    values are read: "ids" (instance labels, one id per object), "classes" (each value a class), or "auto"/None
    (decided over the whole dataset). A word other than these raises UserError.
    """
    with tempfile.TemporaryDirectory(prefix="unet-inspect-") as scratch:
        return _check_source(Path(path), Path(scratch), progress or _quiet, 1.0, label, None,
                             _rule(stacks), masks, values).report


def _rule(stacks: str | StackRule | None) -> StackRule:
    return stacks if isinstance(stacks, StackRule) else StackRule.parse(stacks)


# --- storing a dataset ----------------------------------------------------------------------------------------


def stored_pixels(image: np.ndarray, channels: int, dtype: str, source_bits: int) -> np.ndarray:
    """An image as a dataset stores it: the dataset's channels and dtype, values unchanged except that an 8-bit
    image in a deeper dataset is brought to its bit depth (x (2**bits - 1) / 255), so one rule scales all."""
    image = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    image = image_io.to_channels(image, channels)
    if dtype == "uint16" and image.dtype == np.uint8:
        return np.rint(image.astype(np.float64) * ((2**source_bits - 1) / 255.0)).astype(np.uint16)
    return image.astype(dtype, copy=False)


def _write(checked: _Checked, out: Path, name: str, progress: Progress) -> None:
    """Write the images, masks (and object ids) of every unit, and dataset.json, into `out`."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    class_map, report, rule = checked.class_map, checked.report, checked.stack_rule
    assert class_map is not None and checked.intensity is not None
    if class_map.instances:
        (out / "instances").mkdir()
    suffix = image_suffix(checked.dtype, checked.channels)
    total, total_sq, count = 0.0, 0.0, 0
    digest = hashlib.sha256()
    wanted = {unit.stem for unit in checked.units}
    from_8_bit = sorted(u.stem for u in checked.units if u.dtype == "uint8" and checked.dtype != "uint8")
    pairs = checked.pairs
    for i, pair in enumerate(pairs):
        progress(0.55 + 0.45 * i / len(pairs), f"Saving {pair.image.name}")
        _, planes = stacks_module.resolve(image_io.read_planes(pair.image), image_io.read_mask_planes(pair.mask),
                                          rule, pair.image.name, pair.mask.name)
        for plane, pixels, raw in planes:
            stem = stored_stem(pair.stem) + (f"-p{plane + 1:03d}" if plane is not None else "")
            if stem not in wanted:
                continue
            image = stored_pixels(pixels, checked.channels, checked.dtype, checked.source_bits)
            mask = class_map.decode(raw, pair.mask.name, checked.lossy[pair.mask_label])
            unit = checked.intensity.to_unit(image).astype(np.float64)
            total, total_sq, count = total + unit.sum(), total_sq + (unit**2).sum(), count + unit.size
            arrays = [("images", image, suffix), ("masks", mask, ".png")]
            if class_map.instances:  # the object ids as the user drew them, for counting and separating objects
                arrays.append(("instances", raw.astype(np.uint16), ".png"))
            for folder, array, ext in arrays:
                path = out / folder / f"{stem}{ext}"
                image_io.write_stored(path, array)
                digest.update(f"{folder}/{stem}{ext}".encode())
                digest.update(path.read_bytes())
    mean = total / max(count, 1)
    groups = {unit.stem: stored_stem(unit.pair.stem) for unit in checked.units if unit.plane is not None}
    info = {
        "name": name,
        "pairs": len(checked.units),
        "channels": checked.channels,
        "mask_kind": report.mask_kind,
        "classes": report.classes,
        "soft_edges": class_map.soft_edges,
        **class_map.choices(),
        "instances": class_map.instances,
        "objects_per_image": {unit.stem: report.objects[unit.label] for unit in checked.units
                              if unit.label in report.objects},
        "source_bits": checked.source_bits,
        "image_dtype": checked.dtype,
        "image_format": suffix.lstrip("."),
        "from_8_bit": from_8_bit,
        "intensity": checked.intensity.record(),
        "stacks": str(rule),
        "groups": groups,
        "found": report.found,
        "test": checked.test_stems,
        "layout": report.layout,
        "image_sizes": report.image_sizes,
        "mean": mean,
        "std": float(np.sqrt(max(total_sq / max(count, 1) - mean**2, 0.0))),
        "problems": [p.to_dict() for p in report.problems],
        "hash": digest.hexdigest(),
    }
    atomic.write_json(out / DATASET_FILE, info)


def image_suffix(dtype: str, channels: int) -> str:
    """'.png' for 8-bit grayscale or RGB (what every viewer opens); '.tif' for anything deeper or with other
    channel counts, which PNG cannot hold losslessly."""
    return ".png" if dtype == "uint8" and channels in (1, 3) else ".tif"


class NameTaken(UserError):
    """A dataset of that name is stored already. Nothing is replaced: the caller adds to it (a new version,
    `unet.annotation.add_as_version`) or saves under `free` (`free_name`)."""

    def __init__(self, name: str, free: str) -> None:
        super().__init__(f"a dataset named '{name}' exists already and is kept as it is; add the new images to it "
                         f"(a new version) or save them under another name, such as '{free}'")
        self.name, self.free = name, free


def name_taken(root: str | Path, name: str) -> bool:
    """Whether `name` (as stored, after `safe_name`) is the name of a folder in the datasets root."""
    return (Path(root) / safe_name(name)).exists()


def free_name(root: str | Path, name: str) -> str:
    """`name` as stored, or `name-2`, `name-3`… when that is taken (the first free one)."""
    base = safe_name(name)
    if not name_taken(root, base):
        return base
    return next(f"{base}-{i}" for i in range(2, 100_000) if not name_taken(root, f"{base}-{i}"))


def _stored_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / DATASET_FILE).read_text(encoding="utf-8")).get("hash")
    except (OSError, ValueError, AttributeError):
        return None


def ingest(
    source: str | Path, name: str, root: str | Path, progress: Progress | None = None, label: str | None = None,
    class_map: ClassMap | None = None, stacks: str | StackRule | None = None, masks: str | None = None,
    values: ValueChoices | None = None,
) -> tuple[Dataset, DatasetReport]:
    """Check `source` (folder or zip) and store its usable pairs as `root/safe_name(name)`.

    `label` is the name the user knows the source by (an uploaded zip's own name, not the staged copy's), used in
    messages; it defaults to the source's file name. `class_map` (a run's classes, for data to evaluate it on)
    fixes the classes instead of planning them from these masks; a mask with another value is a problem.
    `stacks` says how multi-plane TIFFs become 2D images (`unet.stacks`: slices, a projection or one plane).

    Everything is built in a hidden folder inside `root` and renamed into place at the end, so a failed ingest
    leaves nothing half-written. A stored dataset is never replaced: the same name with the same content returns
    the stored one, with other content raises `NameTaken` (the caller offers a new version or `free_name`).
    Raises UserError when no pair is usable.
    """
    progress = progress or _quiet
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = child(root, name)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=root))
    try:
        checked = _check_source(Path(source), work / "source", progress, 0.55, label, class_map,
                                _rule(stacks), masks, values)
        report = checked.report
        if not checked.units or checked.class_map is None:
            raise UserError(f"no usable image/mask pairs: {report.reasons() or 'no files found'}")
        _write(checked, work / "dataset", target.name, progress)
        if target.exists():
            if _stored_hash(target) == _stored_hash(work / "dataset"):
                return Dataset.load(target), report  # the same files again: nothing to store twice
            raise NameTaken(target.name, free_name(root, target.name))
        (work / "dataset").rename(target)
        progress(1.0, f"Saved {report.pairs} pairs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Dataset.load(target), report


# --- uploads --------------------------------------------------------------------------------------------------


def _staged_name(filename: str, is_mask: bool) -> str:
    """A safe file name that still pairs: a mask's '_mask' suffix is kept apart, so 'Ä_mask' still pairs with 'Ä'."""
    name = Path(filename.replace("\\", "/")).name
    stem, ext = Path(name).stem, safe_name(Path(name).suffix.lower(), fallback="")
    base = mask_base(stem) if is_mask else stem
    safe = stored_stem(base) + stem[len(base) :]
    return f"{safe}.{ext}" if ext else safe


def stage_uploads(images: list[tuple[str, BinaryIO]], masks: list[tuple[str, BinaryIO]], dest: Path) -> Path:
    """Stream uploaded files into `dest/images` and `dest/masks` under safe names, ready for `ingest(dest, ...)`."""
    dest = Path(dest)
    if len(images) + len(masks) > MAX_MEMBERS:
        raise UserError(f"{len(images) + len(masks)} files were uploaded; at most {MAX_MEMBERS} are accepted")
    for folder, files in (("images", images), ("masks", masks)):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for filename, stream in files:
            if is_junk((Path(filename).name,)):
                continue
            target = dest / folder / _staged_name(filename, folder == "masks")
            copied = 0
            with target.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    copied += len(chunk)
                    if copied > image_io.MAX_FILE_BYTES:
                        break
                    out.write(chunk)
            if copied > image_io.MAX_FILE_BYTES:
                target.unlink()
                limit = image_io.MAX_FILE_BYTES // 1024**2
                raise UserError(f"'{filename}' is over {limit} MB; files that big are refused")
    return dest


# --- a stored dataset -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassInfo:
    index: int
    name: str
    color: tuple[int, int, int]
    pixels: int
    value: int | str | None = None  # the class's gray value or '#rrggbb' colour in the user's masks


@dataclass
class Dataset:
    """A stored dataset (see docs/CONTRACTS.md); build one with `ingest`, read one with `Dataset.load`."""

    root: Path
    name: str
    channels: int
    classes: list[ClassInfo]
    stems: list[str]
    mean: float
    std: float
    mask_kind: str = ""
    image_sizes: dict[str, Any] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    hash: str = ""
    soft_edges: bool = False
    ignore_value: int | None = None
    ignore_values: tuple[int, ...] = ()  # every value read as "not labelled" (ignore_value first)
    background: int | None = 0  # the background class's index, or None: every class is scored
    instances: bool = False
    source_bits: int = 8
    test_stems: list[str] = field(default_factory=list)
    class_records: list[dict[str, Any]] = field(default_factory=list)
    intensity: Intensity | None = None  # how stored values become the network's input (fixed / 255 when absent)
    image_format: str = "png"  # "png" (8-bit gray or RGB) or "tif" (16-bit, float, or other channel counts)
    image_dtype: str = "uint8"
    groups: dict[str, str] = field(default_factory=dict)  # slice stem -> its stack's stem (split together)
    found: str = ""  # what the check found, in words
    objects: dict[str, int] = field(default_factory=dict)  # instance masks: objects per stored image
    mask_folder: str = "masks"  # "targets" in the instance task's view (`unet.task.training_view`)
    unlabelled: list[str] = field(default_factory=list)  # images without masks yet (`unlabelled/`, see annotation)
    version: int = 1  # 1 for what the user uploaded; annotating makes versions 2, 3, ... (`unet.annotation`)
    parent: str = ""  # the dataset a version was made from
    from_8_bit: list[str] = field(default_factory=list)  # 8-bit files stored in a deeper dataset (`as_given`)

    def __post_init__(self) -> None:
        if self.intensity is None:  # stored before the rule was kept: 8-bit images, value / 255
            self.intensity = Intensity.fixed(self.channels)

    @property
    def rule(self) -> Intensity:
        assert self.intensity is not None
        return self.intensity

    def picture(self, image: np.ndarray) -> np.ndarray:
        """An image of this dataset ready to draw on: itself when 8-bit gray or RGB, else uint8 RGB by the
        dataset's intensity rule (16-bit, float, and 2 or 4+ channels as a colour composite)."""
        if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] in (1, 3)):
            return image
        return image_io.display_rgb(self.rule.to_unit(image))

    def group_of(self, stem: str) -> str:
        """The source a stored image came from: its stack for a slice, itself otherwise (splits keep groups whole)."""
        return self.groups.get(stem, stem)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_map(self) -> ClassMap | None:
        """How the user's mask values became this dataset's classes; None for a dataset stored before it was kept."""
        records = [{"index": c.index, "name": c.name, "color": list(c.color), "value": r["value"]}
                   for c, r in zip(self.classes, self.class_records, strict=False) if "value" in r]
        if len(records) != len(self.classes):
            return None
        return ClassMap.from_records(records, self.soft_edges, self.ignore_value, self.instances, self.background,
                                     self.ignore_values)

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        folder = Path(folder)
        try:
            info = json.loads((folder / DATASET_FILE).read_text(encoding="utf-8"))
            classes = [ClassInfo(c["index"], c["name"], tuple(c["color"]), c.get("pixels", 0), c.get("value"))
                       for c in info["classes"]]
            image_format = str(info.get("image_format", "png"))
            stems = sorted(p.stem for p in (folder / "images").glob(f"*.{image_format}"))
            unlabelled = sorted(p.stem for p in (folder / UNLABELLED).glob(f"*.{image_format}"))
            channels = int(info["channels"])
            return cls(
                root=folder, name=info["name"], channels=int(info["channels"]), classes=classes, stems=stems,
                mean=float(info["mean"]), std=float(info["std"]), mask_kind=info.get("mask_kind", ""),
                image_sizes=info.get("image_sizes", {}), problems=info.get("problems", []), hash=info.get("hash", ""),
                soft_edges=bool(info.get("soft_edges", False)), class_records=list(info["classes"]),
                ignore_value=info.get("ignore_value"), instances=bool(info.get("instances", False)),
                ignore_values=tuple(int(v) for v in info.get("ignore_values") or []),
                background=info.get("background", 0),
                source_bits=int(info.get("source_bits", 8)),
                test_stems=list(info.get("test", [])),
                intensity=Intensity.from_record(info.get("intensity"), channels, 8),
                image_format=image_format, image_dtype=str(info.get("image_dtype", "uint8")),
                groups=dict(info.get("groups", {})), found=str(info.get("found", "")),
                objects={str(k): int(v) for k, v in info.get("objects_per_image", {}).items()},
                unlabelled=unlabelled, version=int(info.get("version", 1)), parent=str(info.get("parent", "")),
                from_8_bit=[str(s) for s in info.get("from_8_bit", [])],
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"'{folder.name}' is not a stored dataset ({type(exc).__name__})") from None

    def image_path(self, stem: str) -> Path:
        """The image of `stem`: in `images/` when it has a mask, in `unlabelled/` while it waits for one."""
        path = self.root / "images" / f"{stem}.{self.image_format}"
        if stem in self.unlabelled and not path.exists():
            return self.root / UNLABELLED / f"{stem}.{self.image_format}"
        return path

    @property
    def all_images(self) -> list[str]:
        """Every image, with a mask or not, in name order (what the Annotate page lists)."""
        return sorted(set(self.stems) | set(self.unlabelled))

    def read_image(self, stem: str) -> np.ndarray:
        """The stored image of `stem` (with or without a mask), as stored."""
        return image_io.read_image(self.image_path(stem))

    def mask_path(self, stem: str) -> Path:
        return self.root / self.mask_folder / f"{stem}.png"

    def read_pair(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """(image as stored: HxW or HxWxC, uint8/uint16/float32; mask uint8 HxW of class indices).

        `self.rule.to_unit(image)` puts the image on the network's scale; `unet.images.display_rgb` of that shows it.
        """
        return image_io.read_image(self.image_path(stem)), image_io.read_image(self.mask_path(stem))

    def as_given(self, stem: str, image: np.ndarray) -> np.ndarray:
        """A stored image as the user's file held it, the values `predict` reads: an 8-bit file that a deeper
        dataset brought to its depth (x (2**bits - 1) / 255, see `stored_pixels`) or to float is 8-bit again,
        exactly (that scaling is at least 1, so rounding it back finds every value). Any other image is returned
        as it is. A dataset stored before this was recorded returns every image as it is."""
        if stem not in self.from_8_bit or image.dtype == np.uint8:
            return image
        values = image.astype(np.float64)
        if image.dtype == np.uint16:
            values = values * (255.0 / (2**self.source_bits - 1))
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

    @property
    def training_stems(self) -> list[str]:
        """The stems training may use (split into train and validation): all but the test set."""
        held_out = set(self.test_stems)
        return [stem for stem in self.stems if stem not in held_out]

    def set_test_split(self, fraction: float, seed: int = 0) -> list[str]:
        """Set aside `fraction` of the pairs as a test set (0 removes it): never trained on, never used to choose
        a model, so its scores are the honest figure. Stratified like the validation split. Returns the stems."""
        if not 0.0 <= fraction <= 0.5:
            raise UserError("the test share must be between 0 and 50%")
        test: list[str] = []
        if fraction > 0:
            if len(self.stems) < 3:
                raise UserError(f"the dataset has {len(self.stems)} pairs; a test set needs at least 3 "
                                "(one each to train, validate and test)")
            from unet.splits import split_stems  # NumPy only; kept apart from the TensorFlow pipeline

            test = split_stems(self.stems, fraction, seed,
                               classes_of=lambda stem: set(np.unique(self.read_mask(stem)).tolist()),
                               group_of=self.group_of).val
        self._update_info(test=test)
        self.test_stems = test
        return test

    def _update_info(self, **changes: Any) -> None:
        """Change keys of dataset.json atomically (a unique temp file, so two tabs never share one)."""
        path = self.root / DATASET_FILE
        info = json.loads(path.read_text(encoding="utf-8"))
        info.update(changes)
        atomic.write_json(path, info)

    def read_mask(self, stem: str) -> np.ndarray:
        """The stored mask of `stem`: uint8 class indices, HxW."""
        return image_io.read_image(self.mask_path(stem))

    def save_classes(self, names: list[str], colors: list[list[int]]) -> None:
        """Rename and recolour the classes (one name and one [r, g, b] per class), kept in dataset.json."""
        if len(names) != self.num_classes or len(colors) != self.num_classes:
            raise UserError(f"give {self.num_classes} names and {self.num_classes} colours, one per class")
        cleaned = [str(n).strip()[:40] for n in names]
        if not all(cleaned):
            raise UserError("every class needs a name")
        if len(set(cleaned)) != len(cleaned):
            raise UserError("two classes have the same name; give each its own")
        rgb = [tuple(int(v) for v in c) for c in colors]
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in rgb):
            raise UserError("a colour must be three numbers from 0 to 255 (red, green, blue)")
        info = json.loads((self.root / DATASET_FILE).read_text(encoding="utf-8"))
        classes = info["classes"]
        for entry, name, color in zip(classes, cleaned, rgb, strict=True):
            entry["name"], entry["color"] = name, list(color)
        self._update_info(classes=classes)
        self.classes = [
            ClassInfo(c.index, name, color, c.pixels, c.value)
            for c, name, color in zip(self.classes, cleaned, rgb, strict=True)
        ]


def list_datasets(root: str | Path) -> list[Dataset]:
    """Every stored dataset under `root`, by name; half-written or foreign folders are left out."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and not folder.name.startswith(".") and (folder / DATASET_FILE).is_file():
            try:
                found.append(Dataset.load(folder))
            except UserError:
                continue
    return found
