"""A name used twice never replaces a stored dataset: the second save is refused with a free name to offer, or
joins the first as a new version that keeps every mask drawn; deleting is explicit and names the runs it affects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet import annotation
from unet.dataset import Dataset, NameTaken, free_name, ingest
from unet.demo import write_demo_dataset
from unet.errors import UserError


def _files(folder: Path, names: list[str], size: int = 40) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    out = []
    for name in names:
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (size, size)).astype(np.uint8))
        out.append((path, path.name))
    return out


def _tree_digest(folder: Path) -> str:
    """Every file under `folder`, names and bytes: what 'nothing was changed' means on disk."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def _drawn(tmp_path: Path) -> Dataset:
    """'isbi-draw' with two images drawn: the version that holds the user's strokes (isbi-draw-v2)."""
    upload, _ = annotation.new_image_dataset(_files(tmp_path / "raw", ["a", "b", "c"]), "isbi-draw", tmp_path / "ds")
    drawing = np.zeros((40, 40), np.uint16)
    drawing[5:20, 5:30] = 1
    version = annotation.save_annotation(upload, "a", drawing, tmp_path / "runs").dataset
    return annotation.save_annotation(version, "b", drawing, tmp_path / "runs").dataset


def test_images_to_annotate_under_a_taken_name_are_refused_and_the_drawings_stay(tmp_path):
    drawn = _drawn(tmp_path)
    assert drawn.name == "isbi-draw-v2" and drawn.stems == ["a", "b"]
    before = _tree_digest(drawn.root)
    with pytest.raises(NameTaken) as refused:
        annotation.new_image_dataset(_files(tmp_path / "more", ["d"]), "isbi-draw-v2", tmp_path / "ds")
    assert refused.value.free == "isbi-draw-v2-2"
    assert _tree_digest(drawn.root) == before  # both masks still on disk, byte for byte
    assert not list((tmp_path / "ds").glob(".annotate-*"))  # no half-written folder left


def test_adding_images_makes_a_new_version_with_every_mask_kept(tmp_path):
    drawn = _drawn(tmp_path)
    before = _tree_digest(drawn.root)
    staged, _ = annotation.new_image_dataset(_files(tmp_path / "more", ["d", "a"]), "staged", tmp_path / "staging")
    joined, left_out = annotation.add_as_version(drawn, staged)
    assert joined.name == "isbi-draw-v3" and joined.version == 3
    assert joined.stems == ["a", "b"] and joined.unlabelled == ["a-2", "c", "d"]
    assert [stem for stem, _ in left_out] == ["a"]  # another image named 'a': added as 'a-2', and said
    for stem in ("a", "b"):
        assert np.array_equal(cv2.imread(str(joined.mask_path(stem)), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(drawn.mask_path(stem)), cv2.IMREAD_UNCHANGED))
    assert _tree_digest(drawn.root) == before  # the version added to is untouched
    info = json.loads((joined.root / "dataset.json").read_text())
    assert info["pairs"] == 2 and info["unlabelled"] == 3 and info["added"] == ["a-2", "d"] and info["draft"]
    same, _ = annotation.new_image_dataset([(tmp_path / "raw" / "c.png", "c.png")], "again", tmp_path / "staging")
    with pytest.raises(UserError, match="holds this image already"):
        annotation.add_as_version(joined, same)  # the very same file is not added twice
    counted = sum(np.bincount(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ravel(), minlength=2)[:2]  # 255 left out
                  for f in (joined.root / "masks").glob("*.png"))
    assert [c.pixels for c in joined.classes] == counted.tolist()


def test_a_zip_under_a_taken_name_keeps_the_stored_data(tmp_path):
    first, _ = ingest(write_demo_dataset(tmp_path / "one", "cells", count=4, size=48), "cells", tmp_path / "ds")
    before = _tree_digest(first.root)
    other = write_demo_dataset(tmp_path / "two", "cells", count=5, size=48, seed=3)
    with pytest.raises(NameTaken) as refused:
        ingest(other, "cells", tmp_path / "ds")
    assert refused.value.name == "cells" and refused.value.free == "cells-2"
    assert "exists already" in str(refused.value)
    assert _tree_digest(first.root) == before
    again, _ = ingest(write_demo_dataset(tmp_path / "one-again", "cells", count=4, size=48), "cells", tmp_path / "ds")
    assert again.root == first.root and _tree_digest(first.root) == before  # the same files: the stored one


def test_pairs_join_a_dataset_read_with_its_class_map(tmp_path):
    first, _ = ingest(write_demo_dataset(tmp_path / "one", "cells", count=4, size=48), "cells", tmp_path / "ds")
    staged, _ = ingest(write_demo_dataset(tmp_path / "two", "cells", count=3, size=48, seed=7), "staged",
                       tmp_path / "staging", class_map=first.class_map)
    joined, renamed = annotation.add_as_version(first, staged)  # a second batch numbered from the start again
    assert len(joined.stems) == 7 and joined.name == "cells-v2" and len(renamed) == 3
    assert set(joined.stems) - set(first.stems) == {f"{stem}-2" for stem in staged.stems}
    assert joined.num_classes == first.num_classes
    summed = [a.pixels + b.pixels for a, b in zip(first.classes, staged.classes, strict=True)]
    assert [c.pixels for c in joined.classes] == summed


def test_images_of_another_kind_are_refused_with_the_reason(tmp_path):
    drawn = _drawn(tmp_path)
    folder = tmp_path / "deep"
    folder.mkdir()
    import tifffile

    tifffile.imwrite(folder / "z.tif", np.full((40, 40), 3000, np.uint16))
    staged, _ = annotation.new_image_dataset([(folder / "z.tif", "z.tif")], "staged", tmp_path / "staging")
    with pytest.raises(UserError, match="new images are 12-bit.*holds 8-bit.*new name"):
        annotation.add_as_version(drawn, staged)


def test_free_name_counts_up(tmp_path):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells-2").mkdir()
    assert free_name(tmp_path, "cells") == "cells-3"
    assert free_name(tmp_path, "nuclei") == "nuclei"


def test_deleting_names_the_runs_that_used_it(tmp_path):
    first, _ = ingest(write_demo_dataset(tmp_path / "one", "cells", count=4, size=48), "cells", tmp_path / "ds")
    run = tmp_path / "runs" / "20260101-000000-r"
    run.mkdir(parents=True)
    (run / "training_data.json").write_text(json.dumps({"path": str(first.root)}))
    assert annotation.delete_dataset(first, tmp_path / "runs") == ["20260101-000000-r"]
    assert not first.root.exists() and (run / "training_data.json").exists()
