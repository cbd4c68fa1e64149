"""Masks drawn in the browser: images without masks, dataset versions that take the drawings, and the order in
which to draw.

Why versions: a run records the dataset it trained on (path and hash), and the user's upload is their original
data. So annotating never edits either in place. The first drawing on a dataset makes a new version beside it
(`NAME-v2`: the same image files, hard-linked, and a copy of the masks), which takes every later drawing until a
run trains on it; the next drawing after that makes `NAME-v3`, and so on. Each version is an ordinary stored
dataset (docs/CONTRACTS.md) with three more keys in dataset.json: `version`, `parent` (the upload it comes from)
and `draft` (true while no run has used it), plus `annotated` (the images drawn in the browser).

Images without masks live in `unlabelled/`; an image moves to `images/` when its first mask is saved, so every
other module keeps seeing `images/` + `masks/` pairs only. An unpainted pixel is "not labelled" (255 in the stored
mask, unet.classmap.IGNORE_INDEX), as in ilastik's strokes: training learns from painted pixels only (partial
cross-entropy, Dice over labelled pixels), so a few strokes of each class, background included, train a model.
"Fill the rest as background" (`fill_rest_as_background`) is there for users who mean it. For datasets of
objects an unpainted pixel stays background (ids need whole objects).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unet import atomic
from unet import images as image_io
from unet import stacks as stacks_module
from unet.classmap import IGNORE_INDEX as NOT_LABELLED
from unet.config import Task
from unet.dataset import DATASET_FILE, UNLABELLED, Dataset, NameTaken, free_name, image_suffix, stored_pixels
from unet.errors import UserError
from unet.intensity import Intensity, sample_pixels
from unet.masks import PALETTE
from unet.pairing import stored_stem
from unet.runs import Run
from unet.workspace import child

if TYPE_CHECKING:  # the model side is imported only by the functions that predict
    from unet.inference import Prediction, Predictor

Progress = Callable[[float, str], None]
_VERSION = re.compile(r"-v(\d+)$")
MAX_ANNOTATION_CLASSES = 16  # a class per brush button; more is a different tool's job
SEMANTIC_CLASSES = ("background", "object")
INSTANCE_CLASSES = ("background", "object")


def _quiet(fraction: float, message: str) -> None:
    pass


# --- images without masks ----------------------------------------------------------------------------------------


@dataclass
class _Read:
    """The 2D images of one file (one per plane for a stack of slices), with where they came from."""

    stem: str
    pixels: np.ndarray
    group: str | None  # the stack's stem for a slice


def _read_file(path: Path, label: str, rule: stacks_module.StackRule) -> list[_Read]:
    """Every 2D image of `path` under the stack rule (a stack without masks: every slice by default)."""
    image_io.check_pixels(path)
    planes = image_io.read_planes(path)
    _, resolved = stacks_module.resolve(planes, None, rule, label)
    base = stored_stem(Path(label).stem)
    return [_Read(base + (f"-p{plane + 1:03d}" if plane is not None else ""), pixels,
                  base if plane is not None else None) for plane, pixels, _ in resolved]


def _read_files(files: Sequence[tuple[Path, str]], rule: stacks_module.StackRule, taken: set[str],
                progress: Progress) -> tuple[list[_Read], list[tuple[str, str]]]:
    """The images of every file; unreadable files and names already taken become (file, problem) pairs."""
    found: list[_Read] = []
    problems: list[tuple[str, str]] = []
    for i, (path, label) in enumerate(files):
        progress(0.8 * i / max(len(files), 1), f"Reading {label}")
        try:
            units = _read_file(path, label, rule)
        except UserError as exc:
            problems.append((label, str(exc)))
            continue
        clash = next((u.stem for u in units if u.stem in taken), None)
        if clash:
            problems.append((label, f"the dataset already has an image named '{clash}'; rename the file to add it"))
            continue
        taken.update(u.stem for u in units)
        found += units
    return found, problems


def _usable_reads(files: Sequence[tuple[Path, str]], rule: stacks_module.StackRule, progress: Progress
                  ) -> tuple[list[_Read], list[tuple[str, str]]]:
    """The images of `files` under the stack rule, and the files left out; UserError when none is usable."""
    reads, problems = _read_files(files, rule, set(), progress)
    if not reads:
        reasons = "; ".join(f"{f}: {p}" for f, p in problems[:3])
        raise UserError(f"no usable images: {reasons or 'no files given'}")
    return reads, problems


def _class_records(names: Sequence[str], instances: bool) -> list[dict]:
    """Classes for masks that will be drawn: the values the exported masks will use (0/255 for two classes,
    the index for more), each with its own colour."""
    cleaned = [str(n).strip()[:40] for n in names]
    if len(cleaned) < 2 or not all(cleaned) or len(set(cleaned)) != len(cleaned):
        raise UserError("give at least two classes, each with its own name (the first is the background)")
    if len(cleaned) > MAX_ANNOTATION_CLASSES:
        raise UserError(f"at most {MAX_ANNOTATION_CLASSES} classes can be drawn")
    if instances:
        return [{"index": 0, "name": cleaned[0], "color": [0, 0, 0], "value": 0, "pixels": 0},
                {"index": 1, "name": cleaned[1], "color": list(PALETTE[1]), "value": None, "pixels": 0}]
    values = [0, 255] if len(cleaned) == 2 else list(range(len(cleaned)))
    return [{"index": i, "name": n, "color": [0, 0, 0] if i == 0 else list(PALETTE[i % len(PALETTE)]),
             "value": values[i], "pixels": 0} for i, n in enumerate(cleaned)]


def _bits(pixels: np.ndarray) -> int:
    return 8 if pixels.dtype == np.uint8 else image_io.bits_of(pixels) if pixels.dtype.kind in "ui" else 32


def _write_unlabelled(folder: Path, reads: list[_Read], channels: int, dtype: str, bits: int) -> dict[str, list]:
    """Store the images in `folder/unlabelled`; returns their sizes by stem."""
    (folder / UNLABELLED).mkdir(exist_ok=True)
    suffix = image_suffix(dtype, channels)
    sizes = {}
    for read in reads:
        image_io.write_stored(folder / UNLABELLED / f"{read.stem}{suffix}",
                              stored_pixels(read.pixels, channels, dtype, bits))
        sizes[read.stem] = list(read.pixels.shape[:2])
    return sizes


def _size_summary(sizes: list[list[int]]) -> dict:
    return {"min": list(min(sizes)), "max": list(max(sizes)), "distinct": len({tuple(s) for s in sizes})}


def _channel_groups(reads: list[_Read]) -> list[tuple[int, list[_Read]]]:
    """The images grouped by the channels they can be stored with, largest group first (a tie goes to RGB, then
    to more channels): gray and RGB join one group (they convert into each other), any other count is its own."""
    have = {r.stem: image_io.channels_of(r.pixels) for r in reads}
    groups: list[tuple[int, list[_Read]]] = []
    left = list(reads)
    while left:
        counts: dict[int, int] = {}
        for read in left:
            counts[have[read.stem]] = counts.get(have[read.stem], 0) + 1
        channels = max(counts, key=lambda c: (counts[c], c == 3, c))
        groups.append((channels, [r for r in left if image_io.convertible(have[r.stem], channels)]))
        left = [r for r in left if not image_io.convertible(have[r.stem], channels)]
    return groups


def _store_images(reads: list[_Read], channels: int, target: Path, classes: Sequence[str], instances: bool,
                  rule: stacks_module.StackRule, problems: list[tuple[str, str]], progress: Progress) -> Dataset:
    """Store images of one channel count as the dataset `target` (16-bit and float kept as they are, with the
    dataset's percentile rule as for masks); written beside it first, so a half-written dataset is never seen."""
    kinds = {r.pixels.dtype.name for r in reads}
    dtype = "float32" if any(k.startswith("float") for k in kinds) else "uint16" if kinds - {"uint8"} else "uint8"
    bits = max((_bits(r.pixels) for r in reads if r.pixels.dtype.kind in "ui"), default=8)
    stored = [stored_pixels(r.pixels, channels, dtype, bits) for r in reads]
    rule_of_intensity = Intensity.fixed(channels) if dtype == "uint8" else Intensity.from_samples(
        [sample_pixels(image).astype(np.float64).reshape(-1, channels) for image in stored])
    units = [rule_of_intensity.to_unit(image) for image in stored]
    mean = float(np.mean([u.mean() for u in units]))
    std = float(np.sqrt(np.mean([((u - mean) ** 2).mean() for u in units])))
    root = target.parent
    work = Path(tempfile.mkdtemp(prefix=".annotate-", dir=root))
    try:
        folder = work / "dataset"
        (folder / "images").mkdir(parents=True)
        (folder / "masks").mkdir()
        if instances:
            (folder / "instances").mkdir()
        progress(0.85, f"Saving the images of '{target.name}'")
        sizes = _write_unlabelled(folder, reads, channels, dtype, bits)
        depth = "32-bit float" if dtype == "float32" else f"{bits}-bit"
        info = {
            "name": target.name, "pairs": 0, "channels": channels,
            "mask_kind": "instances" if instances else "binary" if len(classes or SEMANTIC_CLASSES) == 2 else "index",
            "classes": _class_records(classes or (INSTANCE_CLASSES if instances else SEMANTIC_CLASSES), instances),
            "soft_edges": False, "ignore_value": None, "instances": instances, "objects_per_image": {},
            "source_bits": bits if dtype != "float32" else 8, "image_dtype": dtype,
            "image_format": image_suffix(dtype, channels).lstrip("."), "intensity": rule_of_intensity.record(),
            "stacks": str(rule), "groups": {r.stem: r.group for r in reads if r.group},
            "found": f"{len(reads)} images without masks, {channels} channel{'s' if channels != 1 else ''}, {depth}",
            "test": [], "layout": "images without masks", "image_sizes": _size_summary(list(sizes.values())),
            "sizes": sizes, "mean": mean, "std": std,
            "problems": [{"file": f, "problem": p} for f, p in problems],
            "hash": hashlib.sha256("".join(sorted(sizes)).encode()).hexdigest(),
            "version": 1, "parent": "", "draft": False, "annotated": [],
        }  # fmt: skip
        atomic.write_json(folder / DATASET_FILE, info)
        if target.exists():  # checked again at the end: another tab may have taken the name meanwhile
            raise NameTaken(target.name, free_name(root, target.name))
        folder.rename(target)
        progress(1.0, f"Saved {len(reads)} images to annotate")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Dataset.load(target)


def _new_target(root: Path, name: str) -> Path:
    """The folder of a new dataset called `name`; a stored dataset is never replaced (`NameTaken` says a free
    name: the caller adds to it as a new version, `add_as_version`, or picks another name)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = child(root, name)
    if target.exists():
        raise NameTaken(target.name, free_name(root, target.name))
    return target


def new_image_dataset(files: Sequence[tuple[Path, str]], name: str, root: Path, classes: Sequence[str] = (),
                      instances: bool = False, stacks: str | None = None, progress: Progress | None = None
                      ) -> tuple[Dataset, list[tuple[str, str]]]:
    """Store images without masks as a new dataset to annotate; returns it and the files left out, with why.

    `files` are (path on disk, the name the user knows it by). `classes` names what will be drawn (the first is
    the background); `instances` says each drawn object gets its own id (the "separate touching objects" task).
    Channels follow the majority of the images (gray and RGB convert into each other; others are left out by
    name), for a caller that needs one dataset (images added to an existing one). An upload of mixed channel
    counts is `new_image_datasets`' to store: it keeps every group. 16-bit and float images are kept as they are.
    """
    progress = progress or _quiet
    rule = stacks_module.StackRule.parse(stacks)
    reads, problems = _usable_reads(files, rule, progress)
    (channels, kept), *others = _channel_groups(reads)
    problems += [(r.stem, f"it has {image_io.channels_of(r.pixels)} channels but most images have {channels}")
                 for _, group in others for r in group]
    target = _new_target(root, name)
    return _store_images(kept, channels, target, classes, instances, rule, problems, progress), problems


@dataclass(frozen=True)
class NewDatasets:
    """What an upload of images without masks became: one dataset per channel count (the largest group under the
    name the user gave, the others as NAME-2ch, NAME-1ch…), and the files left out, with why."""

    datasets: list[Dataset]
    problems: list[tuple[str, str]]

    def words(self) -> str:
        """The split in words, naming every dataset ('' for a single one)."""
        if len(self.datasets) < 2:
            return ""
        parts = [f"'{d.name}' ({len(d.all_images)} image{'s' if len(d.all_images) != 1 else ''}, {d.channels} "
                 f"channel{'s' if d.channels != 1 else ''})" for d in self.datasets]
        return (f"The images have different numbers of channels, which one model cannot take together, so they "
                f"were saved as {len(parts)} datasets: " + ", ".join(parts[:-1]) + f" and {parts[-1]}.")


def new_image_datasets(files: Sequence[tuple[Path, str]], name: str, root: Path, classes: Sequence[str] = (),
                       instances: bool = False, stacks: str | None = None, progress: Progress | None = None
                       ) -> NewDatasets:
    """Store images without masks to annotate, as `new_image_dataset` does, keeping every image: when their
    channel counts cannot share a dataset (2 gray images and a 2-channel stack), each count becomes a dataset of
    its own, the largest named `name` and the others `name-Kch` (a free name), so nothing uploaded is dropped
    (issue #25). `NameTaken` is raised for `name` before anything is written.
    """
    progress = progress or _quiet
    rule = stacks_module.StackRule.parse(stacks)
    reads, problems = _usable_reads(files, rule, progress)
    groups = _channel_groups(reads)
    target = _new_target(root, name)
    datasets = [_store_images(groups[0][1], groups[0][0], target, classes, instances, rule, problems, progress)]
    for channels, group in groups[1:]:
        other = child(target.parent, free_name(target.parent, f"{target.name}-{channels}ch"))
        datasets.append(_store_images(group, channels, other, classes, instances, rule, [], progress))
    return NewDatasets(datasets, problems)


# --- versions -----------------------------------------------------------------------------------------------------


def _info(dataset: Dataset) -> dict:
    return json.loads((dataset.root / DATASET_FILE).read_text(encoding="utf-8"))


def used_by_runs(dataset: Dataset, runs_root: Path) -> list[str]:
    """The runs (folder names) that trained on this exact dataset folder."""
    mine = dataset.root.resolve()
    used = []
    folders = sorted(p for p in Path(runs_root).iterdir() if p.is_dir()) if Path(runs_root).is_dir() else []
    for folder in folders:
        path = Run(folder).training_data().get("path")
        if path and Path(path).resolve() == mine:
            used.append(folder.name)
    return used


def lineage(dataset: Dataset) -> str:
    """The name of the upload a dataset (or a version of it) comes from."""
    if dataset.version <= 1:
        return dataset.name
    return dataset.parent or _VERSION.sub("", dataset.name)


def _next_version(dataset: Dataset) -> int:
    base = lineage(dataset)
    numbers = [dataset.version]
    for folder in dataset.root.parent.iterdir():
        match = _VERSION.search(folder.name)
        if match and folder.name[: match.start()] == base:
            numbers.append(int(match.group(1)))
    return max(numbers) + 1


def _copy_tree(source: Path, target: Path, folders: Sequence[str]) -> None:
    """The dataset's files into `target`: images hard-linked (never edited in place), masks copied."""
    for name in folders:
        if not (source / name).is_dir():
            continue
        (target / name).mkdir(parents=True, exist_ok=True)
        for file in (source / name).iterdir():
            if file.is_file():
                if name in ("images", UNLABELLED):
                    atomic.link(file, target / name / file.name)
                else:
                    shutil.copyfile(file, target / name / file.name)


@dataclass(frozen=True)
class _Version:
    """The next version of a dataset while it is built: its hidden folder, its final place, number and lineage."""

    folder: Path
    target: Path
    number: int
    base: str

    def record(self, info: dict, made_from: str, **more: object) -> None:
        """Write dataset.json of the version: `info` (the source's, changed) with the version's own keys."""
        info.update(name=self.target.name, version=self.number, parent=self.base, made_from=made_from, draft=True,
                    **more)
        atomic.write_json(self.folder / DATASET_FILE, info)


@contextmanager
def _next_version_folder(dataset: Dataset) -> Iterator[_Version]:
    """Build the next version of `dataset` (`NAME-vN`) in a hidden folder beside it, renamed into place when the
    block ends without an error: a failure leaves nothing half-made, and no existing folder is ever replaced."""
    number, base = _next_version(dataset), lineage(dataset)
    target = child(dataset.root.parent, f"{base}-v{number}")
    work = Path(tempfile.mkdtemp(prefix=".version-", dir=dataset.root.parent))
    try:
        (work / "dataset").mkdir()
        yield _Version(work / "dataset", target, number, base)
        if target.exists():
            raise UserError(f"a dataset named '{target.name}' is in the way; rename or delete it first")
        (work / "dataset").rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def editable_version(dataset: Dataset, runs_root: Path) -> Dataset:
    """The version that takes the next drawing: this one while it is a draft no run used, else a new version."""
    info = _info(dataset)
    if info.get("draft") and not used_by_runs(dataset, runs_root):
        return dataset
    with _next_version_folder(dataset) as version:
        _copy_tree(dataset.root, version.folder, ("images", "masks", "instances", UNLABELLED))
        version.record(info, dataset.name)
    return Dataset.load(version.target)


def add_as_version(existing: Dataset, addition: Dataset) -> tuple[Dataset, list[tuple[str, str]]]:
    """A new version of `existing` that holds its images and masks (drawn ones included) and those of `addition`
    (a dataset stored in a staging folder: images with masks read with `existing`'s class map, or images without
    masks). `existing` stays as it is. Returns the version and the images left out, with why.

    Why a version and not an edit: a run may have trained on `existing`, and the user's drawings are in it.
    """
    _check_joinable(existing, addition)
    with _next_version_folder(existing) as version:
        _copy_tree(existing.root, version.folder, ("images", "masks", "instances", UNLABELLED))
        added, left_out = _add_files(existing, addition, version.folder)
        if not added:
            raise UserError("no new image could be added: " + "; ".join(f"{f}: {p}" for f, p in left_out[:3]))
        version.record(_merged_info(existing, addition, added, left_out, version.folder), existing.name, added=added)
    return Dataset.load(version.target), left_out


def _check_joinable(existing: Dataset, addition: Dataset) -> None:
    """The new images must be stored like the old ones, or one intensity rule and one network cannot take both."""
    def kind(ds: Dataset) -> str:
        depth = "32-bit float" if ds.image_dtype == "float32" else f"{ds.source_bits}-bit"
        return f"{depth}, {ds.channels} channel{'s' if ds.channels != 1 else ''}"

    if (existing.channels, existing.image_dtype, existing.image_format) != (
            addition.channels, addition.image_dtype, addition.image_format) or (
            existing.image_dtype == "uint16" and existing.source_bits != addition.source_bits):
        raise UserError(f"the new images are {kind(addition)} but '{existing.name}' holds {kind(existing)}; "
                        "save them under a new name instead")
    if addition.stems and existing.instances != addition.instances:
        raise UserError(f"'{existing.name}' holds {'object ids' if existing.instances else 'classes'} and the new "
                        f"masks hold {'object ids' if addition.instances else 'classes'}; save them under a new name")
    if addition.stems and [c.value for c in existing.classes] != [c.value for c in addition.classes]:
        raise UserError(f"the new masks do not use the classes of '{existing.name}'; save them under a new name")


def _add_files(existing: Dataset, addition: Dataset, folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Link the addition's images (and copy its masks) into `folder`. An image the dataset holds already (the same
    file) is left out; another image under a name already taken is added as `NAME-2` (a second batch numbered
    from 1 again), so nothing drawn is hidden and nothing new is lost."""
    taken = set(existing.all_images)
    added: list[str] = []
    notes: list[tuple[str, str]] = []
    for stem in addition.all_images:
        image = addition.image_path(stem)
        new_stem = stem
        if stem in taken:
            if existing.image_path(stem).read_bytes() == image.read_bytes():
                notes.append((stem, f"'{existing.name}' holds this image already; it was not added twice"))
                continue
            new_stem = next(f"{stem}-{i}" for i in range(2, 100_000) if f"{stem}-{i}" not in taken)
            notes.append((stem, f"'{existing.name}' has another image named '{stem}'; this one was added as "
                                f"'{new_stem}'"))
        taken.add(new_stem)
        labelled = stem in addition.stems
        place = folder / ("images" if labelled else UNLABELLED)
        place.mkdir(exist_ok=True)
        atomic.link(image, place / f"{new_stem}{image.suffix}")
        for sub in ("masks", "instances") if labelled else ():
            if (addition.root / sub / f"{stem}.png").exists():
                (folder / sub).mkdir(exist_ok=True)
                shutil.copyfile(addition.root / sub / f"{stem}.png", folder / sub / f"{new_stem}.png")
        added.append(new_stem)
    return added, notes


def _merged_info(existing: Dataset, addition: Dataset, added: list[str], left_out: list[tuple[str, str]],
                 folder: Path) -> dict:
    """dataset.json of the joined version: counts, sizes, pixels per class, statistics and hash of both."""
    info, extra = _info(existing), _info(addition)
    fmt = info.get("image_format", "png")
    pairs = sorted(p.stem for p in (folder / "images").glob(f"*.{fmt}"))
    waiting = sorted(p.stem for p in (folder / UNLABELLED).glob(f"*.{fmt}"))
    sizes = dict(info.get("sizes", {}))
    for stem in set(pairs + waiting) - set(sizes):
        where = folder / ("images" if stem in pairs else UNLABELLED) / f"{stem}.{fmt}"
        sizes[stem] = list(image_io.image_size(where))
    if addition.stems:
        for record, more in zip(info["classes"], extra["classes"], strict=True):
            record["pixels"] = int(record.get("pixels", 0)) + int(more.get("pixels", 0))
    old_n, new_n = len(existing.all_images), len(added)
    mean = (existing.mean * old_n + addition.mean * new_n) / (old_n + new_n)
    variance = sum(n * (s**2 + (m - mean) ** 2) for n, s, m in
                   ((old_n, existing.std, existing.mean), (new_n, addition.std, addition.mean))) / (old_n + new_n)
    objects = {**info.get("objects_per_image", {}),
               **{s: n for s, n in extra.get("objects_per_image", {}).items() if s in added}}
    groups = {**info.get("groups", {}), **{s: g for s, g in extra.get("groups", {}).items() if s in added}}
    # objects of a renamed image are counted again from its ids; its stack stays together under the new names
    for stem in added:
        if stem not in objects and (folder / "instances" / f"{stem}.png").exists():
            ids = image_io.read_image(folder / "instances" / f"{stem}.png")
            objects[stem] = int(len(np.unique(ids[ids > 0])))
    problems = info.get("problems", []) + extra.get("problems", []) + [
        {"file": f, "problem": p} for f, p in left_out]
    digest = hashlib.sha256(f"{info.get('hash', '')}+{extra.get('hash', '')}+{','.join(added)}".encode())
    info.update(pairs=len(pairs), unlabelled=len(waiting), sizes=sizes, objects_per_image=objects, groups=groups,
                mean=mean, std=float(np.sqrt(variance)), problems=problems, hash=digest.hexdigest(),
                found=f"{info.get('found', '')}; {new_n} image{'s' if new_n != 1 else ''} added".lstrip("; "))
    labelled_sizes = [sizes[s] for s in pairs if s in sizes]
    if labelled_sizes:
        info["image_sizes"] = _size_summary(labelled_sizes)
    return info


def reread_values(dataset: Dataset, background: int | None, not_labelled: Sequence[int]) -> Dataset:
    """A new version of `dataset` whose masks say what the user means: the class of index `background` becomes
    class 0, the background (None: no background, every class counts), and the classes of index `not_labelled`
    become "not labelled" (255), left out of training and scores. `dataset` itself stays as it is."""
    if dataset.instances:
        raise UserError("a dataset of object ids has its background (0) and no other classes to change")
    k = dataset.num_classes
    dropped = sorted({int(i) for i in not_labelled})
    if any(not 0 <= i < k for i in dropped) or (background is not None and not 0 <= background < k):
        raise UserError(f"'{dataset.name}' has classes 0 to {k - 1}")
    if background in dropped:
        raise UserError("the background cannot also be 'not labelled'")
    kept = [i for i in range(k) if i not in dropped]
    if len(kept) < 2:
        raise UserError("at least two classes must stay to learn anything")
    order = ([background] if background is not None else []) + [i for i in kept if i != background]
    table = np.full(256, NOT_LABELLED, np.uint8)
    table[order] = np.arange(len(order), dtype=np.uint8)
    with _next_version_folder(dataset) as version:
        _copy_tree(dataset.root, version.folder, ("images", UNLABELLED))
        (version.folder / "masks").mkdir()
        pixels = np.zeros(len(order), np.int64)
        for stem in dataset.stems:
            mask = table[dataset.read_mask(stem)]
            atomic.write_png(version.folder / "masks" / f"{stem}.png", mask)
            pixels += np.bincount(mask.ravel(), minlength=256)[: len(order)]
        info = _info(dataset)
        records = info["classes"]
        ignored = [records[i].get("value") for i in dropped if isinstance(records[i].get("value"), int)]
        classes = [dict(records[i], index=n, pixels=int(pixels[n])) for n, i in enumerate(order)]
        if background is not None and classes[0]["name"].startswith("class "):
            classes[0]["name"] = "background"
        earlier = info.get("ignore_values") or ([info["ignore_value"]] if info.get("ignore_value") is not None else [])
        all_ignored = list(dict.fromkeys([*earlier, *ignored]))
        digest = hashlib.sha256(f"{info.get('hash', '')}/values/{order}/{dropped}".encode()).hexdigest()
        version.record(info, dataset.name, classes=classes, background=0 if background is not None else None,
                       ignore_value=all_ignored[0] if all_ignored else None, ignore_values=all_ignored, hash=digest)
    return Dataset.load(version.target)


def delete_dataset(dataset: Dataset, runs_root: Path) -> list[str]:
    """Delete a stored dataset (an explicit action of the user's); returns the runs that had trained on it, whose
    models, scores and records stay. Refused while one of them is training on it."""
    used = used_by_runs(dataset, runs_root)
    busy = [name for name in used if Run(Path(runs_root) / name).is_active]
    if busy:
        raise UserError(f"'{dataset.name}' is being trained on by run {busy[0]}; stop it first")
    shutil.rmtree(dataset.root)
    return used


# --- reading and saving drawings ---------------------------------------------------------------------------------


@contextmanager
def _locked(dataset: Dataset) -> Iterator[None]:
    """One save at a time per dataset (two tabs drawing at once take turns)."""
    with open(dataset.root / ".annotation.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def to_drawing(dataset: Dataset, stored: np.ndarray) -> np.ndarray:
    """A stored class mask as the canvas draws it: 0 "not labelled", class k as k + 1 (object ids as they are).

    Why the shift: an unpainted pixel is not a statement about its class (as in ilastik's strokes), so the
    canvas's 0, what the eraser leaves, must differ from "background", which the user paints like any class.
    """
    if dataset.instances:
        return stored.astype(np.uint16)
    drawing = stored.astype(np.uint16) + 1
    drawing[stored == NOT_LABELLED] = 0
    return drawing


def from_drawing(dataset: Dataset, drawing: np.ndarray) -> np.ndarray:
    """The stored class mask of a canvas drawing (`to_drawing` undone): unpainted pixels become "not labelled"
    (255), left out of the loss and every score."""
    top = int(drawing.max(initial=0))
    if top > dataset.num_classes:
        raise UserError(f"the drawing uses class {top - 1} but the dataset has {dataset.num_classes} classes")
    stored = (drawing.astype(np.int32) - 1).astype(np.uint8)
    stored[drawing == 0] = NOT_LABELLED
    return stored


def fill_rest_as_background(dataset: Dataset, drawing: np.ndarray) -> np.ndarray:
    """The drawing with every unpainted pixel painted as the background (class 0): for users who mean it."""
    if dataset.instances or dataset.background != 0:
        raise UserError(f"'{dataset.name}' has no background class to fill with")
    return np.where(drawing == 0, 1, drawing).astype(np.uint16)


def read_annotation(dataset: Dataset, stem: str) -> np.ndarray:
    """uint16 [H, W] as the canvas draws it (`to_drawing`): 0 not labelled, class k as k + 1; object ids for a
    dataset of objects; zeros when nothing is drawn."""
    if dataset.instances and (dataset.root / "instances" / f"{stem}.png").exists():
        return image_io.read_image(dataset.root / "instances" / f"{stem}.png").astype(np.uint16)
    mask_path = dataset.root / "masks" / f"{stem}.png"
    if stem in dataset.stems and mask_path.exists():
        return to_drawing(dataset, image_io.read_image(mask_path))
    height, width = image_io.image_size(dataset.image_path(stem))
    return np.zeros((height, width), np.uint16)


def _class_indices(dataset: Dataset, mask: np.ndarray) -> np.ndarray:
    """The stored class mask a drawing gives (`from_drawing`), or for objects their union as class 1."""
    if dataset.instances:
        return (mask > 0).astype(np.uint8)
    return from_drawing(dataset, mask)


@dataclass(frozen=True)
class Saved:
    """What a save did: the dataset it went into, and the version it left untouched, if it made a new one."""

    dataset: Dataset
    forked_from: str | None = None
    cleared: bool = False  # the drawing was empty: the image is (again) one without a mask

    def words(self, stem: str) -> str:
        if self.cleared:
            return f"'{stem}' has nothing drawn: it stays an image without a mask"
        made = (f" (a new version: '{self.forked_from}' was used by a training and is kept as it was)"
                if self.forked_from else "")
        return f"saved '{stem}' in '{self.dataset.name}'{made}"


def save_annotation(dataset: Dataset, stem: str, mask: np.ndarray, runs_root: Path) -> Saved:
    """Save a drawing of `stem` (uint16 [H, W], as `read_annotation` gives) into the editable version.

    Written atomically; dataset.json's counts, the image's place (`unlabelled/` -> `images/`) and the hash follow.
    An empty drawing of an image that had no mask (or only one drawn here) leaves it without a mask, so a stroke
    drawn and undone does not turn into an "all background" training example.
    """
    if stem not in dataset.all_images:
        raise UserError(f"the dataset '{dataset.name}' has no image '{stem}'")
    target = editable_version(dataset, runs_root)
    forked = dataset.name if target.root != dataset.root else None
    with _locked(target):
        target = Dataset.load(target.root)
        info = _info(target)
        height, width = image_io.image_size(target.image_path(stem))
        if mask.shape != (height, width) or mask.dtype.kind not in "ui":
            raise UserError(f"the drawing is {mask.shape[::-1]} but '{stem}' is {width}x{height}")
        annotated = list(info.get("annotated", []))
        old = read_annotation(target, stem) if stem in target.stems else None
        if not mask.any() and (old is None or stem in annotated):
            _unlabel(target, stem, info, old)
            return Saved(Dataset.load(target.root), forked, cleared=True)
        indices = _class_indices(target, mask)
        atomic.write_png(target.root / "masks" / f"{stem}.png", indices)
        if target.instances:
            (target.root / "instances").mkdir(exist_ok=True)
            atomic.write_png(target.root / "instances" / f"{stem}.png", mask.astype(np.uint16))
            info.setdefault("objects_per_image", {})[stem] = int(len(np.unique(mask[mask > 0])))
        waiting = target.root / UNLABELLED / target.image_path(stem).name
        if waiting.exists():
            os.replace(waiting, target.root / "images" / waiting.name)
        _count_pixels(info, old, indices, target)
        if stem not in annotated:
            annotated.append(stem)
        info.setdefault("sizes", {})[stem] = [height, width]
        _finish(target, info, annotated, stem, mask)
    return Saved(Dataset.load(target.root), forked)


def _unlabel(dataset: Dataset, stem: str, info: dict, old: np.ndarray | None) -> None:
    """Put an image back among those without a mask (its drawing was emptied)."""
    if old is not None:
        _count_pixels(info, old, None, dataset)
        for folder in ("masks", "instances"):
            (dataset.root / folder / f"{stem}.png").unlink(missing_ok=True)
        (dataset.root / UNLABELLED).mkdir(exist_ok=True)
        os.replace(dataset.image_path(stem), dataset.root / UNLABELLED / dataset.image_path(stem).name)
    info.get("objects_per_image", {}).pop(stem, None)
    annotated = [s for s in info.get("annotated", []) if s != stem]
    _finish(dataset, info, annotated, stem, np.zeros(1, np.uint8))


def _count_pixels(info: dict, old: np.ndarray | None, new: np.ndarray | None, dataset: Dataset) -> None:
    """Keep each class's pixel count in dataset.json right: minus the old mask of the image, plus the new one."""
    classes = info["classes"]
    k = len(classes)
    delta = np.zeros(k, np.int64)
    if old is not None:
        delta -= np.bincount(_class_indices(dataset, old).ravel(), minlength=k)[:k]
    if new is not None:
        delta += np.bincount(new.ravel(), minlength=k)[:k]
    for record, change in zip(classes, delta, strict=True):
        record["pixels"] = max(0, int(record.get("pixels", 0)) + int(change))


def _finish(dataset: Dataset, info: dict, annotated: list[str], stem: str, mask: np.ndarray) -> None:
    """dataset.json after a save: pairs, the images still without masks, sizes and a new hash."""
    fmt = info.get("image_format", "png")
    pairs = sorted(p.stem for p in (dataset.root / "images").glob(f"*.{fmt}"))
    sizes = info.get("sizes", {})
    labelled_sizes = [sizes[s] for s in pairs if s in sizes]
    digest = hashlib.sha256(f"{info.get('hash', '')}/{stem}/".encode() + mask.tobytes()).hexdigest()
    info.update(pairs=len(pairs), annotated=annotated, hash=digest,
                unlabelled=len(list((dataset.root / UNLABELLED).glob(f"*.{fmt}"))))
    if labelled_sizes:
        info["image_sizes"] = _size_summary(labelled_sizes)
    atomic.write_json(dataset.root / DATASET_FILE, info)


# --- progress, and the model's help -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotationProgress:
    """How far the drawing is: images with a mask out of all, and each class's share of the labelled pixels."""

    labelled: int
    total: int
    class_pixels: dict[str, int] = field(default_factory=dict)
    objects: int | None = None

    def words(self) -> str:
        share = ""
        pixels = sum(self.class_pixels.values())
        if pixels:
            share = "; labelled pixels: " + ", ".join(f"{name} {n:,} ({100 * n / pixels:.0f}%)"
                                                      for name, n in self.class_pixels.items())
        objects = f", {self.objects} objects" if self.objects is not None else ""
        return f"{self.labelled} of {self.total} images have a mask{objects}{share}"


def annotation_progress(dataset: Dataset) -> AnnotationProgress:
    objects = sum(dataset.objects.get(s, 0) for s in dataset.stems) if dataset.instances else None
    return AnnotationProgress(len(dataset.stems), len(dataset.all_images),
                              {c.name: int(c.pixels) for c in dataset.classes}, objects)


def uncertainty(prediction: Prediction) -> float:
    """Mean pixel entropy of the prediction, 0 (sure everywhere) to 1 (a coin toss everywhere).

    The images where the model hesitates most are the ones whose correction teaches it most (the usual
    uncertainty sampling of active learning).
    """
    p = prediction.probabilities.astype(np.float32)
    eps = 1e-7
    if p.shape[-1] == 1:
        q = np.clip(p[..., 0], eps, 1 - eps)
        entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2.0)
    else:
        q = np.clip(p, eps, 1.0)
        entropy = -(q * np.log(q)).sum(axis=-1) / np.log(p.shape[-1])
    return float(entropy.mean())


def rank_by_uncertainty(predictor: Predictor, dataset: Dataset, stems: Sequence[str],
                        progress: Progress | None = None) -> list[tuple[str, float]]:
    """(stem, uncertainty) for `stems`, most uncertain first; images the model cannot take are left out."""
    progress = progress or _quiet
    scored = []
    for i, stem in enumerate(stems):
        progress(i / max(len(stems), 1), f"Predicting {stem}")
        try:
            scored.append((stem, uncertainty(predictor.predict(dataset.read_image(stem)))))
        except UserError:
            continue
    progress(1.0, "Done")
    return sorted(scored, key=lambda item: -item[1])


def check_run_fits(predictor: Predictor, dataset: Dataset) -> str | None:
    """Why a run's predictions cannot start this dataset's drawings, or None when they can."""
    if predictor.channels != dataset.channels:
        return (f"the model takes {predictor.channels}-channel images but this dataset's have {dataset.channels}; "
                "choose a run trained on images like these")
    classes = 2 if predictor.task == Task.INSTANCES else predictor.num_classes
    if not dataset.instances and classes != dataset.num_classes:
        return (f"the model predicts {classes} classes but this dataset has {dataset.num_classes}; choose a run "
                "trained with the same classes")
    return None


def predicted_annotation(prediction: Prediction, dataset: Dataset, threshold: float = 0.5,
                         min_size: int = 0) -> np.ndarray:
    """A drawing to start from: the prediction's classes (every pixel labelled, as the canvas draws them), or for
    a dataset of objects one id per object."""
    if dataset.instances:
        labels = prediction.labels(threshold, min_size)
        return np.minimum(labels, np.iinfo(np.uint16).max).astype(np.uint16)
    return prediction.mask(threshold, min_size).astype(np.uint16) + 1
