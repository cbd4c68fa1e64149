"""A NumPy array of channels last, written by `tifffile.imwrite` without its axes, reads as the user's images
(issue #25): (5, 64, 64, 2) is 5 planes of 64x64 with 2 channels, not the 320 pages of 64x2 pixels tifffile stores.
Files that say their axes, and stacks of images that are merely narrow, are read as they say."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from unet import images, tiff


@pytest.mark.parametrize("shape", [(5, 64, 64, 2), (64, 64, 2), (3, 4, 40, 48, 5), (2, 64, 64, 16)])
def test_an_array_written_without_axes_reads_channels_last(tmp_path, shape):
    data = np.random.default_rng(1).integers(0, 60000, shape).astype(np.uint16)
    path = tmp_path / "array.tif"
    tifffile.imwrite(path, data)
    info = tiff.stack_info(path)
    planes = int(np.prod(shape[:-3]))
    assert (info.planes, info.height, info.width, info.channels) == (planes, *shape[-3:])
    np.testing.assert_array_equal(images.read_planes(path), data.reshape(planes, *shape[-3:]))
    assert images.image_size(path) == shape[-3:-1]


@pytest.mark.parametrize("shape", [(10, 512, 16), (6, 64, 64, 17), (5, 64, 20, 6)])
def test_narrow_images_or_many_values_stay_planes(tmp_path, shape):
    """The last axis is too long for channels, or not 4 times shorter than both axes before it."""
    path = tmp_path / "narrow.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8))
    info = tiff.stack_info(path)
    assert (info.height, info.width, info.channels) == (*shape[-2:], 1)


def test_recorded_axes_are_kept(tmp_path):
    data = np.zeros((5, 64, 64, 2), np.uint16)
    path = tmp_path / "zyxc.tif"
    tifffile.imwrite(path, data, metadata={"axes": "ZYXC"})  # says its axes, pages of 64x2 all the same
    assert tiff.stack_info(path).axes == "ZYXC"
    sequence = tmp_path / "pages.tif"
    tifffile.imwrite(sequence, np.zeros((8, 64, 2), np.uint8), metadata=None)  # no shape recorded: pages
    info = tiff.stack_info(sequence)
    assert (info.planes, info.height, info.width, info.channels) == (8, 64, 2, 1)
