"""Reading and writing user images: dtypes, channels, EXIF, size limits, and errors that name the file."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.png_files import decompression_bomb_png, huge_png_header
from unet import images
from unet.errors import UserError


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def test_grayscale_rgb_and_rgba_read_as_hw_or_hwx3_rgb(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert images.read_image(save(Image.fromarray(rgb[..., 0]), tmp_path / "g.png")).shape == (6, 8)
    read = images.read_image(save(Image.fromarray(rgb), tmp_path / "c.png"))
    assert read.shape == (6, 8, 3) and read[0, 0].tolist() == [200, 0, 0]
    rgba = np.dstack([rgb, np.full((6, 8), 7, np.uint8)])
    read = images.read_image(save(Image.fromarray(rgba), tmp_path / "a.png"))
    assert read.shape == (6, 8, 3) and read[0, 0].tolist() == [200, 0, 0]


def test_16_bit_tiff_keeps_its_depth_and_scales_to_8_bit_by_its_bit_depth(tmp_path):
    twelve_bit = np.array([[0, 4095], [2048, 1000]], np.uint16)
    path = tmp_path / "deep.tif"
    cv2.imwrite(str(path), twelve_bit)
    read = images.read_image(path)
    assert read.dtype == np.uint16 and read.tolist() == twelve_bit.tolist()  # an LZW TIFF (OpenCV's), exact
    assert images.to_uint8(read).tolist() == [[0, 255], [128, 62]]
    assert images.to_uint8(np.array([[0, 65535]], np.uint16)).tolist() == [[0, 255]]


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(Image.fromarray(np.zeros((20, 40, 3), np.uint8)), tmp_path / "phone.jpg", exif=exif.tobytes())
    assert images.read_image(path).shape[:2] == (40, 20)


def test_unicode_and_space_paths_are_read_and_written(tmp_path):
    path = tmp_path / "Zellkerne Ä 細胞.png"
    images.write_png(path, np.full((3, 4, 3), (10, 20, 30), np.uint8))
    assert images.read_image(path)[0, 0].tolist() == [10, 20, 30]
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)[0, 0].tolist() == [30, 20, 10]


def test_giant_png_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png_header(30000, 30000))
    with pytest.raises(UserError, match=r"'huge.png' is too large"):
        images.read_image(path)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(decompression_bomb_png(10_100))
    assert path.stat().st_size < 2_000_000
    with pytest.raises(UserError, match=r"'bomb.png' is 10100x10100 pixels; images over 100 megapixels"):
        images.read_image(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.png", b"", "'empty.png' is an empty file"),
        ("notes.png", b"this is not a picture", "'notes.png' is not an image"),
        ("cut.png", None, "'cut.png' is damaged"),
    ],
)
def test_bad_files_raise_user_errors_naming_only_the_file(tmp_path, name, content, message):
    if content is None:
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(buffer, "PNG")
        content = buffer.getvalue()[:-400]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        images.read_image(path)
    assert message in str(error.value)
    assert str(tmp_path) not in str(error.value)


def test_file_over_the_byte_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    path = save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8)), tmp_path / "big.png")
    with pytest.raises(UserError, match="'big.png' is 0.0 MB; files over 0 MB are refused"):
        images.read_image(path)


def test_colour_mask_with_equal_channels_reads_as_values(tmp_path):
    gray = np.array([[0, 1], [2, 3]], np.uint8)
    path = save(Image.fromarray(np.dstack([gray] * 3)), tmp_path / "m.png")
    assert images.read_mask_raw(path).tolist() == gray.tolist()


def test_to_channels_converts_both_ways():
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert images.to_channels(rgb, 1).shape == (2, 2)
    assert images.to_channels(rgb[..., 0], 3).shape == (2, 2, 3)
    assert images.channels_of(np.dstack([rgb[..., 0]] * 3)) == 1


def test_image_size_reads_only_the_header(tmp_path):
    path = tmp_path / "wide.png"
    path.write_bytes(huge_png_header(300, 20))
    assert images.image_size(path) == (20, 300)
