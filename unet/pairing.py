"""Finding the images and masks folders in a source and pairing their files by stem.

A source holds `images/` and `masks/` (or `labels/`, `label/`, `annotations/`, `gt/`), in any letter case, at
its top or one folder down (a zip of `mydata/images/...`). The layouts of the tools users come from are found
too, and named in the check: ZeroCostDL4Mic (`Training_source/` and `Training_target/`, same file names), BiaPy
(`x/` and `y/`), Cellpose (`NAME.tif` beside `NAME_masks.tif` or `NAME_cp_masks.png` in one folder), and
`train/` + `test/` trees of any of them, whose test part becomes the dataset's test set. `cell01.png` pairs with
a mask `cell01.png`, `cell01_mask.tif`, `cell01_label.png` or `cell01_cp_masks.png`. Whatever cannot be paired
is reported, never silently dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from unet.dataset_check import DatasetReport
from unet.errors import UserError
from unet.images import IMAGE_EXTENSIONS
from unet.workspace import safe_name
from unet.zipsafe import is_junk

IMAGE_FOLDERS = ("images", "image", "imgs", "img", "training_source", "source", "source_qc_folder", "x", "raw")
MASK_FOLDERS = ("masks", "mask", "labels", "label", "annotations", "gt", "training_target", "target",
                "target_qc_folder", "y", "ground_truth", "groundtruth")
LAYOUT_NAMES = {  # (images folder, masks folder) -> the convention, as the check names it
    ("training_source", "training_target"): "ZeroCostDL4Mic (Training_source / Training_target)",
    ("source_qc_folder", "target_qc_folder"): "ZeroCostDL4Mic quality control (Source_QC_folder / Target_QC_folder)",
    ("x", "y"): "BiaPy (x / y)",
}
TRAIN_FOLDERS = ("train", "training")
TEST_FOLDERS = ("test", "testing")
_MASK_SUFFIX = re.compile(r"[_-](cp[_-])?(mask|label)s?$", re.IGNORECASE)
_CELLPOSE_MASK = re.compile(r"_(cp_)?masks$", re.IGNORECASE)


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Path

    @property
    def image_label(self) -> str:
        return f"{self.image.parent.name}/{self.image.name}"

    @property
    def mask_label(self) -> str:
        return f"{self.mask.parent.name}/{self.mask.name}"


def mask_base(stem: str) -> str:
    """The image stem a mask stem names: 'a_mask' and 'a_label' name 'a'."""
    return _MASK_SUFFIX.sub("", stem) or stem


def stored_stem(stem: str) -> str:
    """A user's stem as a safe file name; a short hash keeps names apart that sanitising would make equal."""
    safe = safe_name(stem, fallback="image")
    return safe if safe == stem else f"{safe}-{hashlib.sha1(stem.encode()).hexdigest()[:8]}"


def _subfolders(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir() and not is_junk((p.name,))}


@dataclass(frozen=True)
class Layout:
    """Where a source's images and masks are: one folder pair, or one folder (Cellpose), and what to call it."""

    images: Path
    masks: Path
    name: str
    test: tuple[Path, Path] | None = None  # the test part of a train/test tree

    @property
    def one_folder(self) -> bool:
        return self.images == self.masks


def _folder_pair(folder: Path) -> tuple[Path | None, Path | None]:
    children = _subfolders(folder)
    images = next((children[n] for n in IMAGE_FOLDERS if n in children), None)
    masks = next((children[n] for n in MASK_FOLDERS if n in children), None)
    return images, masks


def _layout_name(images: Path, masks: Path) -> str:
    return LAYOUT_NAMES.get((images.name.lower(), masks.name.lower()), f"{images.name} / {masks.name}")


def _cellpose_folder(folder: Path) -> bool:
    """A folder holding images and their NAME_masks / NAME_cp_masks files side by side."""
    stems = {p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}
    return any(_CELLPOSE_MASK.search(s) and _CELLPOSE_MASK.sub("", s) in stems for s in stems)


def _pair_in(folder: Path) -> tuple[Path, Path] | None:
    """The images and masks of `folder` (two subfolders, or itself in the Cellpose way), or None."""
    images, masks = _folder_pair(folder)
    if images and masks:
        return images, masks
    return (folder, folder) if _cellpose_folder(folder) else None


def find_layout(source: Path) -> Layout:
    """The images and masks of `source`, at its top or one folder down, in any known layout; UserError otherwise."""
    candidates = [source] + list(_subfolders(source).values())
    for folder in candidates:
        children = _subfolders(folder)
        train = next((children[n] for n in TRAIN_FOLDERS if n in children), None)
        test = next((children[n] for n in TEST_FOLDERS if n in children), None)
        if train is not None and (found := _pair_in(train)):
            name = "Cellpose (NAME with NAME_masks in one folder)" if found[0] == found[1] else _layout_name(*found)
            tested = _pair_in(test) if test is not None else None
            return Layout(*found, f"{name}, in {train.name}/" + (f" and {test.name}/" if tested else ""), tested)
        found = _pair_in(folder)
        if found:
            name = "Cellpose (NAME with NAME_masks in one folder)" if found[0] == found[1] else _layout_name(*found)
            return Layout(*found, name)
    found_images = found_masks = None
    for folder in candidates:
        images, masks = _folder_pair(folder)
        found_images, found_masks = found_images or images, found_masks or masks
    expected = ("an 'images' folder and a 'masks' folder (or 'labels', 'annotations', 'gt'; ZeroCostDL4Mic's "
                "Training_source / Training_target; BiaPy's x / y; or Cellpose's NAME_masks files beside the images)")
    if found_masks:
        raise UserError(f"found a '{found_masks.name}' folder but no 'images' folder beside it; expected {expected}")
    if found_images:
        raise UserError(f"found an '{found_images.name}' folder but no masks folder beside it; expected {expected}")
    if not any(p for p in source.rglob("*") if p.is_file()):
        raise UserError("it is empty")
    raise UserError(f"no images and masks folders found; expected {expected}")


def find_folders(source: Path) -> tuple[Path, Path]:
    """The images and masks folders of `source` (see `find_layout`)."""
    layout = find_layout(source)
    return layout.images, layout.masks


def _files(folder: Path, report: DatasetReport) -> list[Path]:
    """Image files directly inside `folder`; other files are reported, system junk is ignored."""
    files = []
    for path in sorted(folder.iterdir()):
        if is_junk((path.name,)) or path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
        else:
            kinds = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
            report.add(f"{folder.name}/{path.name}", f"'{path.name}' is not an image file (accepted: {kinds})")
    return files


def _group(files: list[Path], key, what: str, report: DatasetReport) -> tuple[dict[str, Path], set[str]]:
    """Files by key, and the keys shared by several files: those are reported and left out, as any could be meant."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        groups[key(path)].append(path)
    unique, shared = {}, set()
    for name, paths in groups.items():
        if len(paths) == 1:
            unique[name] = paths[0]
            continue
        shared.add(name)
        listed = ", ".join(f"'{p.name}'" for p in paths)
        for path in paths:
            report.add(
                f"{path.parent.name}/{path.name}",
                f"{len(paths)} {what} are named '{name}' ({listed}); all are left out, rename them",
            )
    return unique, shared


def pair_files(images_dir: Path, masks_dir: Path, report: DatasetReport) -> list[Pair]:
    """The image/mask pairs, by stem; unpaired and ambiguous files become problems in `report`.

    One folder for both (Cellpose): files named NAME_masks / NAME_cp_masks are the masks, the rest the images.
    """
    if images_dir == masks_dir:
        every = _files(images_dir, report)
        image_files = [p for p in every if not _CELLPOSE_MASK.search(p.stem)]
        mask_files = [p for p in every if _CELLPOSE_MASK.search(p.stem)]
    else:
        image_files, mask_files = _files(images_dir, report), _files(masks_dir, report)
    images, shared_images = _group(image_files, lambda p: p.stem, "images", report)

    def names_an_image(mask: Path) -> str:
        return mask.stem if mask.stem in images else mask_base(mask.stem)

    masks, shared_masks = _group(mask_files, names_an_image, "masks", report)
    pairs = []
    for stem, image in sorted(images.items()):
        if stem in masks:
            pairs.append(Pair(stem, image, masks[stem]))
        elif stem not in shared_masks:
            report.add(
                f"{images_dir.name}/{image.name}",
                f"image '{image.name}' has no mask (looked in "
                f"'{masks_dir.name}/' for '{stem}', '{stem}_mask' or '{stem}_label' with any extension)",
            )
    for stem, mask in sorted(masks.items()):
        if stem not in images and stem not in shared_images:
            report.add(f"{masks_dir.name}/{mask.name}", f"mask '{mask.name}' has no image named '{stem}'")
    return pairs
