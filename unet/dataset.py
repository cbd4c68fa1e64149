"""A user's images and masks, checked and stored as a clean dataset in the workspace.

`inspect_source` checks a folder or zip and says in plain words what is wrong; `ingest` stores the usable pairs
in the layout of docs/CONTRACTS.md (8-bit PNG images, masks of class indices, `dataset.json`); `Dataset` reads a
stored one back. Finding and pairing files is in `unet.pairing`, decoding masks in `unet.masks`, unpacking zips
in `unet.zipsafe`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from unet import atomic
from unet import images as image_io
from unet.classmap import IGNORE_INDEX, ClassMap
from unet.errors import UserError
from unet.masks import MaskHistogram, histogram, instance_objects, plan_classes, too_many_values
from unet.pairing import Pair, find_layout, mask_base, pair_files, stored_stem
from unet.report import DatasetReport, Problem
from unet.workspace import child, safe_name
from unet.zipsafe import MAX_MEMBERS, extract_zip, is_junk

DATASET_FILE = "dataset.json"
WHOLE_DATASET = "(whole dataset)"  # the file column of a problem that concerns no single file
MIN_PAIRS = 4  # fewer than this and training can hardly hold any images out for validation
Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


@dataclass
class _Checked:
    """What checking a source found, beyond the report: the usable pairs and how to store them."""

    report: DatasetReport
    pairs: list[Pair] = field(default_factory=list)
    class_map: ClassMap | None = None
    lossy: dict[str, bool] = field(default_factory=dict)  # per mask label: JPEG, whose noise snaps to a class
    source_bits: int = 8  # the bit depth of the images, over the whole dataset: one scaling rule for all
    test_stems: list[str] = field(default_factory=list)  # from the test part of a train/test tree
    channels: int = 1


# --- checking a source ----------------------------------------------------------------------------------------


def _check_pair(pair: Pair, report: DatasetReport) -> tuple[np.ndarray, MaskHistogram] | None:
    """The decoded image and the mask's histogram, or None after reporting why the pair is unusable."""
    try:
        image_hw = image_io.check_pixels(pair.image)
        image = image_io.read_image(pair.image)
    except UserError as exc:
        report.add(pair.image_label, str(exc))
        return None
    try:
        mask_hw = image_io.check_pixels(pair.mask)
        if mask_hw != image_hw:
            raise UserError(
                f"mask '{pair.mask.name}' is {mask_hw[1]}x{mask_hw[0]} but its image is {image_hw[1]}x{image_hw[0]}"
            )
        raw = image_io.read_mask_raw(pair.mask)
        if raw.shape[:2] != image.shape[:2]:
            raise UserError(f"mask '{pair.mask.name}' and its image are turned differently (EXIF orientation)")
    except UserError as exc:
        report.add(pair.mask_label, str(exc))
        return None
    hist = histogram(raw, image_io.is_lossy(pair.mask))
    if raw.ndim == 2 and len(hist.keys) > 2:
        hist = dataclasses.replace(hist, objects=instance_objects(raw))
    reason = too_many_values(hist)
    if reason:
        report.add(pair.mask_label, f"mask '{pair.mask.name}' {reason}")
        return None
    return image, hist


def _plan(kept: list[tuple[Pair, int, tuple[int, int], MaskHistogram]], report: DatasetReport) -> ClassMap | None:
    """The class map decided from the masks themselves (a new dataset), with warnings on how values were read.

    Palette PNG masks are read as their indices; the classes take the palette's colours for display.
    """
    try:
        plan = plan_classes([hist for *_, hist in kept])
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
        report.add("", "the masks are instance labels (one id per object, as Cellpose, StarDist, ilastik and QuPath "
                       "write them): each object is learned as the class 'object', and the ids are kept to count and "
                       "separate objects", False)
    if plan.ignore is not None:
        report.add("", f"the value {plan.ignore} beside the class numbers is read as \"not labelled\" (as in "
                       "VOC-style masks): those pixels are left out of training and of every score", False)
    blank = plan.class_infos(np.zeros(plan.num_classes, np.int64))
    if plan.instances:
        blank[1].update(name="object", value=None)
    palette = image_io.mask_palette(kept[0][0].mask)
    for record in blank if palette and not plan.colour else []:
        if isinstance(record["value"], int) and record["value"] < len(palette):
            record["color"] = list(palette[record["value"]])
    return ClassMap.from_records(blank, soft_edges=bool(plan.soft_edge_values), ignore=plan.ignore,
                                 instances=plan.instances)


def _check_folder(folder: Path, progress: Progress, start: float, end: float,
                  class_map: ClassMap | None = None) -> _Checked:
    """Check every pair; with `class_map` (a run's classes), masks must use its values, else the map is planned."""
    checked = _Checked(DatasetReport())
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
    kept: list[tuple[Pair, int, tuple[int, int], MaskHistogram]] = []
    depths: list[int] = []
    for i, pair in enumerate(pairs):
        progress(start + (end - start) * i / max(len(pairs), 1), f"Checking {pair.image.name}")
        found = _check_pair(pair, report)
        if found:
            image, hist = found
            kept.append((pair, image_io.channels_of(image), image.shape[:2], hist))
            depths.append(image_io.bits_of(image) if image.dtype != np.uint8 else 8)
    if not kept:
        return checked
    checked.channels = _majority_channels([(p, c) for p, c, _, _ in kept], report)
    checked.source_bits = _source_bits(depths, report)
    class_map = class_map or _plan(kept, report)
    if class_map is None:
        return checked
    totals = np.zeros(class_map.num_classes, np.int64)
    usable = []
    for entry in kept:
        pair, hist = entry[0], entry[3]
        index, unknown = class_map.lookup(hist.keys, hist.lossy)
        if unknown:
            report.add(pair.mask_label, class_map.unknown_message(pair.mask.name, unknown))
            continue
        labelled = index != IGNORE_INDEX
        pixels = np.bincount(index[labelled], weights=hist.counts[labelled],
                             minlength=class_map.num_classes).astype(np.int64)
        totals += pixels
        usable.append(entry)
        if all(e.value is not None for e in class_map.entries) and pixels[1:].sum() == 0:
            report.add(pair.mask_label, f"mask '{pair.mask.name}' has no foreground (all background); kept", False)
    if not usable:
        return checked
    if len(usable) < MIN_PAIRS:
        report.add("", f"only {len(usable)} usable pairs; at least {MIN_PAIRS} are needed to train and validate", False)
    sizes = [hw for _, _, hw, _ in usable]
    report.image_sizes = {"min": list(min(sizes)), "max": list(max(sizes)), "distinct": len(set(sizes))}
    report.pairs, report.channels = len(usable), checked.channels
    report.mask_kind = _mask_kind(class_map)
    report.classes = [dict(record, pixels=int(totals[record["index"]])) for record in class_map.records()]
    if class_map.instances:
        report.objects = {pair.mask_label: (hist.objects if hist.objects is not None else int((hist.keys > 0).sum()))
                          for pair, _, _, hist in usable}
    checked.pairs, checked.class_map = [pair for pair, *_ in usable], class_map
    checked.test_stems = sorted(stored_stem(pair.stem) for pair, *_ in usable if pair.stem in test_stems)
    report.test_pairs = len(checked.test_stems)
    checked.lossy = {pair.mask_label: hist.lossy for pair, _, _, hist in usable}
    return checked


def _source_bits(depths: list[int], report: DatasetReport) -> int:
    """One bit depth for the whole dataset (the deepest image's), said in plain words when it is over 8."""
    bits = max(depths, default=8)
    if bits > 8:
        report.add("", f"the images hold up to {bits}-bit values; every image was scaled to 8 bits with one rule "
                       f"for the whole dataset (value x 255 / {2**bits - 1}), and new images are scaled the same way",
                   False)
    return bits


def _mask_kind(class_map: ClassMap) -> str:
    if class_map.instances:
        return "instances"
    if class_map.num_classes <= 2:
        return "binary"
    return "colour" if class_map.colour else "index"


def _majority_channels(found: list[tuple[Pair, int]], report: DatasetReport) -> int:
    """1 or 3: what most images have (RGB on a tie, which loses nothing); the others are converted and reported."""
    counts = Counter(channels for _, channels in found)
    channels = 3 if counts[3] >= counts[1] else 1
    others = [pair.image.name for pair, c in found if c != channels]
    if others:
        had, now = ("colour", "grayscale") if channels == 1 else ("grayscale", "colour (RGB)")
        listed = ", ".join(f"'{n}'" for n in others[:5]) + (" and more" if len(others) > 5 else "")
        report.add(
            "",
            f"{len(others)} of {len(found)} images are {had} and were converted to {now} like the rest: {listed}",
            False,
        )
    return channels


def _open_source(source: Path, scratch: Path, label: str) -> tuple[Path, list]:
    """A folder to check: `source` itself, or the zip unpacked into `scratch`, with the zip's own problems."""
    if source.is_dir():
        return source, []
    if not source.is_file():
        raise UserError(f"'{label}' was not found")
    return scratch, extract_zip(source, scratch, label=label)


def _check_source(source: Path, scratch: Path, progress: Progress, end: float, label: str | None = None,
                  class_map: ClassMap | None = None) -> _Checked:
    label = Path(label).name if label else source.name
    progress(0.0, f"Opening {label}")
    folder, zip_problems = _open_source(source, scratch, label)
    checked = _check_folder(folder, progress, 0.1, end, class_map)
    checked.report.problems[:0] = zip_problems
    checked.report.problems = [  # problems of the whole source name it, warnings about the whole dataset say so
        p if p.file else Problem(label if p.skipped else WHOLE_DATASET, p.problem, p.skipped)
        for p in checked.report.problems
    ]
    return checked


def inspect_source(path: str | Path, progress: Progress | None = None, label: str | None = None) -> DatasetReport:
    """Check a folder or zip without storing anything; every problem is in the report, never raised.

    `label` is the name the user knows the source by (an upload's own name), used in messages.
    """
    with tempfile.TemporaryDirectory(prefix="unet-inspect-") as scratch:
        return _check_source(Path(path), Path(scratch), progress or _quiet, 1.0, label).report


# --- storing a dataset ----------------------------------------------------------------------------------------


def _write(checked: _Checked, out: Path, name: str, progress: Progress) -> None:
    """Write the normalised pairs and dataset.json into `out`."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    if checked.class_map is not None and checked.class_map.instances:
        (out / "instances").mkdir()
    class_map, report = checked.class_map, checked.report
    assert class_map is not None
    total, total_sq, count = 0.0, 0.0, 0
    digest = hashlib.sha256()
    for i, pair in enumerate(checked.pairs):
        progress(0.55 + 0.45 * i / len(checked.pairs), f"Saving {pair.image.name}")
        eight_bit = image_io.to_uint8(image_io.read_image(pair.image), checked.source_bits)
        image = image_io.to_channels(eight_bit, checked.channels)
        mask = class_map.decode(image_io.read_mask_raw(pair.mask), pair.mask.name, checked.lossy[pair.mask_label])
        values = image.astype(np.float64) / 255.0
        total, total_sq, count = total + values.sum(), total_sq + (values**2).sum(), count + values.size
        stem = stored_stem(pair.stem)
        arrays = [("images", image), ("masks", mask)]
        if class_map.instances:  # the object ids as the user drew them, for counting and separating objects
            raw = image_io.read_mask_raw(pair.mask)
            arrays.append(("instances", raw.astype(np.uint16)))
        for folder, array in arrays:
            path = out / folder / f"{stem}.png"
            image_io.write_png(path, array)
            digest.update(f"{folder}/{stem}.png".encode())
            digest.update(path.read_bytes())
    mean = total / max(count, 1)
    info = {
        "name": name,
        "pairs": len(checked.pairs),
        "channels": checked.channels,
        "mask_kind": report.mask_kind,
        "classes": report.classes,
        "soft_edges": class_map.soft_edges,
        "ignore_value": class_map.ignore,
        "instances": class_map.instances,
        "objects_per_image": {stored_stem(Path(label).stem): count for label, count in report.objects.items()},
        "source_bits": checked.source_bits,
        "test": checked.test_stems,
        "layout": report.layout,
        "image_sizes": report.image_sizes,
        "mean": mean,
        "std": float(np.sqrt(max(total_sq / max(count, 1) - mean**2, 0.0))),
        "problems": [p.to_dict() for p in report.problems],
        "hash": digest.hexdigest(),
    }
    atomic.write_json(out / DATASET_FILE, info)


def ingest(
    source: str | Path, name: str, root: str | Path, progress: Progress | None = None, label: str | None = None,
    class_map: ClassMap | None = None,
) -> tuple[Dataset, DatasetReport]:
    """Check `source` (folder or zip) and store its usable pairs as `root/safe_name(name)`.

    `label` is the name the user knows the source by (an uploaded zip's own name, not the staged copy's), used in
    messages; it defaults to the source's file name. `class_map` (a run's classes, for data to evaluate it on)
    fixes the classes instead of planning them from these masks; a mask with another value is a problem.

    Everything is built in a hidden folder inside `root` and renamed into place at the end, so a failed ingest
    leaves nothing half-written; a dataset of the same name is replaced. Raises UserError when no pair is usable.
    """
    progress = progress or _quiet
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = child(root, name)
    work = Path(tempfile.mkdtemp(prefix=".ingest-", dir=root))
    try:
        checked = _check_source(Path(source), work / "source", progress, 0.55, label, class_map)
        report = checked.report
        if not checked.pairs or checked.class_map is None:
            raise UserError(f"no usable image/mask pairs: {report.reasons() or 'no files found'}")
        _write(checked, work / "dataset", target.name, progress)
        if target.exists():
            target.rename(work / "replaced")
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
    instances: bool = False
    source_bits: int = 8
    test_stems: list[str] = field(default_factory=list)
    class_records: list[dict[str, Any]] = field(default_factory=list)

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
        return ClassMap.from_records(records, self.soft_edges, self.ignore_value, self.instances)

    @classmethod
    def load(cls, folder: str | Path) -> Dataset:
        folder = Path(folder)
        try:
            info = json.loads((folder / DATASET_FILE).read_text(encoding="utf-8"))
            classes = [ClassInfo(c["index"], c["name"], tuple(c["color"]), c.get("pixels", 0), c.get("value"))
                       for c in info["classes"]]
            stems = sorted(p.stem for p in (folder / "images").glob("*.png"))
            return cls(
                root=folder, name=info["name"], channels=int(info["channels"]), classes=classes, stems=stems,
                mean=float(info["mean"]), std=float(info["std"]), mask_kind=info.get("mask_kind", ""),
                image_sizes=info.get("image_sizes", {}), problems=info.get("problems", []), hash=info.get("hash", ""),
                soft_edges=bool(info.get("soft_edges", False)), class_records=list(info["classes"]),
                ignore_value=info.get("ignore_value"), instances=bool(info.get("instances", False)),
                source_bits=int(info.get("source_bits", 8)),
                test_stems=list(info.get("test", [])),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"'{folder.name}' is not a stored dataset ({type(exc).__name__})") from None

    def image_path(self, stem: str) -> Path:
        return self.root / "images" / f"{stem}.png"

    def mask_path(self, stem: str) -> Path:
        return self.root / "masks" / f"{stem}.png"

    def read_pair(self, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 HxW or HxWx3 RGB, mask uint8 HxW of class indices)."""
        return image_io.read_image(self.image_path(stem)), image_io.read_image(self.mask_path(stem))

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
                               classes_of=lambda stem: set(np.unique(self.read_mask(stem)).tolist())).val
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
