"""The mask canvas's PNG codec: 16-bit ids survive the trip, and what the browser sends is checked, not trusted."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from unet.ui.mask_canvas import decode_mask, encode_image, encode_mask

PREFIX = "data:image/png;base64,"


def _png_url(pixels: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", pixels)
    assert ok
    return PREFIX + base64.b64encode(png.tobytes()).decode()


def test_every_id_up_to_65535_survives_the_round_trip() -> None:
    mask = np.arange(65536, dtype=np.uint32).reshape(256, 256).astype(np.uint16)
    decoded = decode_mask(encode_mask(mask), (256, 256))
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, mask)


def test_the_png_is_opaque_rgb_with_low_byte_in_red_and_high_byte_in_green() -> None:
    mask = np.array([[0x1234, 0xFFFF, 0]], np.uint16)
    png = base64.b64decode(encode_mask(mask)[len(PREFIX) :])
    bgra = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgra.shape == (1, 3, 4)
    np.testing.assert_array_equal(bgra[0, :, 2], [0x34, 0xFF, 0])  # R
    np.testing.assert_array_equal(bgra[0, :, 1], [0x12, 0xFF, 0])  # G
    np.testing.assert_array_equal(bgra[0, :, 0], [0, 0, 0])  # B
    np.testing.assert_array_equal(bgra[0, :, 3], [255, 255, 255])  # A


def test_other_integer_masks_are_accepted_within_range() -> None:
    mask = np.array([[0, 1], [2, 3]], np.int64)
    np.testing.assert_array_equal(decode_mask(encode_mask(mask), (2, 2)), mask)


@pytest.mark.parametrize("mask", [np.array([[-1, 0]]), np.array([[65536]]), np.zeros((2, 2, 3), np.uint16)])
def test_masks_that_do_not_fit_16_bits_or_2d_are_refused(mask: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_mask(mask)


def test_a_mask_of_the_wrong_size_is_refused() -> None:
    url = encode_mask(np.zeros((10, 20), np.uint16))
    with pytest.raises(ValueError, match="20x10"):
        decode_mask(url, (20, 10))
    with pytest.raises(ValueError):
        decode_mask(url, (10, 21))


@pytest.mark.parametrize(
    "url",
    [
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff").decode(),
        PREFIX + base64.b64encode(b"GIF89a" + bytes(40)).decode(),
        PREFIX + "not base64 at all!",
        PREFIX,
        "",
        None,
        12,
    ],
)
def test_anything_but_a_png_data_url_is_refused(url: object) -> None:
    with pytest.raises(ValueError):
        decode_mask(url, (10, 20))  # type: ignore[arg-type]


def test_a_png_with_a_forged_header_is_refused() -> None:
    png = bytearray(base64.b64decode(encode_mask(np.zeros((10, 20), np.uint16))[len(PREFIX) :]))
    png[40:] = bytes(len(png) - 40)  # header claims 20x10, the pixel data is garbage
    with pytest.raises(ValueError):
        decode_mask(PREFIX + base64.b64encode(bytes(png)).decode(), (10, 20))


def test_16_bit_or_grayscale_pngs_are_refused() -> None:
    with pytest.raises(ValueError, match="8-bit RGB"):
        decode_mask(_png_url(np.zeros((10, 20), np.uint8)), (10, 20))
    with pytest.raises(ValueError, match="8-bit RGB"):
        decode_mask(_png_url(np.zeros((10, 20, 3), np.uint16)), (10, 20))


def test_an_rgb_png_without_alpha_is_read_too() -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 2] = 7  # R
    bgr[..., 1] = 1  # G
    np.testing.assert_array_equal(decode_mask(_png_url(bgr), (2, 3)), np.full((2, 3), 263, np.uint16))


def test_the_image_is_an_rgb_png_data_url() -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red
    url = encode_image(image)
    assert url.startswith(PREFIX)
    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(url[len(PREFIX) :]), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr[..., ::-1], image)
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 5, 3), np.float32))
