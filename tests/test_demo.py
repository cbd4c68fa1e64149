"""The generated demo datasets: their layout, their classes, and that a seed always gives the same pictures."""

from __future__ import annotations

import numpy as np
import pytest

from unet.dataset import ingest
from unet.demo import write_demo_dataset
from unet.errors import UserError
from unet.images import read_image


@pytest.mark.parametrize(("kind", "channels", "classes"), [("cells", 1, {0, 1}), ("shapes", 3, {0, 1, 2, 3})])
def test_demo_data_has_paired_images_and_index_masks(tmp_path, kind, channels, classes):
    out = write_demo_dataset(tmp_path / kind, kind=kind, count=6, size=64)
    names = sorted(p.name for p in (out / "images").glob("*.png"))
    assert len(names) == 6 and names == sorted(p.name for p in (out / "masks").glob("*.png"))
    image, mask = read_image(out / "images" / names[0]), read_image(out / "masks" / names[0])
    assert image.dtype == np.uint8 and image.shape == ((64, 64) if channels == 1 else (64, 64, 3))
    assert mask.shape == (64, 64)
    values = set()
    for name in names:
        values |= set(np.unique(read_image(out / "masks" / name)).tolist())
    assert values == classes


def test_demo_data_is_the_same_for_the_same_seed_and_differs_for_another(tmp_path):
    one = write_demo_dataset(tmp_path / "a", kind="shapes", count=3, size=64, seed=5)
    two = write_demo_dataset(tmp_path / "b", kind="shapes", count=3, size=64, seed=5)
    other = write_demo_dataset(tmp_path / "c", kind="shapes", count=3, size=64, seed=6)
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    assert any((one / f).read_bytes() != (other / f).read_bytes() for f in files)


def test_shape_colour_does_not_give_away_the_class(tmp_path):
    out = write_demo_dataset(tmp_path / "s", kind="shapes", count=24, size=64)
    hues = {1: [], 2: [], 3: []}
    for path in (out / "images").glob("*.png"):
        image, mask = read_image(path), read_image(out / "masks" / path.name)
        for k in hues:
            if (mask == k).sum() > 20:
                hues[k].append(image[mask == k].mean(axis=0))
    for k, colours in hues.items():
        assert np.std(np.array(colours), axis=0).max() > 30, f"class {k} always has about the same colour"


def test_demo_data_ingests_as_a_clean_dataset(tmp_path):
    dataset, report = ingest(write_demo_dataset(tmp_path / "cells", count=8, size=64), "demo", tmp_path / "ws")
    assert report.problems == [] and report.pairs == 8
    assert dataset.channels == 1 and dataset.num_classes == 2 and 0.02 < dataset.classes[1].pixels / (8 * 64 * 64) < 0.6


def test_unknown_demo_kind_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="must be one of cells, shapes, not 'dogs'"):
        write_demo_dataset(tmp_path, kind="dogs")
