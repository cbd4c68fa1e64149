"""Scientific TIFFs: stacks, channels and dtypes read exactly, and hostile headers refused before decoding."""

from __future__ import annotations

import lzma
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unet import tiff
from unet.errors import UserError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A directory whose name must never reach a message shown to the user."""
    path = tmp_path / "private_server_dir"
    path.mkdir()
    return path


def refused(read, path: Path) -> str:
    """The UserError message `read(path)` raises; it names the file, and nothing of the directory."""
    with pytest.raises(UserError) as caught:
        read(path)
    message = str(caught.value)
    assert f"'{path.name}'" in message
    assert "private_server_dir" not in message and str(path.parent) not in message
    return message


def patch_tags(path: Path, **values: int) -> None:
    """Overwrite single-valued SHORT/LONG tags of the first page in place (tifffile writes little-endian)."""
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        spots = [(tags[name].valueoffset, int(tags[name].dtype), value) for name, value in values.items()]
    raw = bytearray(path.read_bytes())
    for offset, dtype, value in spots:
        struct.pack_into("<H" if dtype == 3 else "<I", raw, offset, value)
    path.write_bytes(bytes(raw))


def replace_strip(path: Path, data: bytes, compression: int) -> None:
    """Point a one-strip image at `data`, appended to the file, stored with `compression`."""
    start = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(data)
    patch_tags(path, StripOffsets=start, StripByteCounts=len(data), Compression=compression)


def packbits(data: bytes) -> bytes:
    """PackBits with literal runs only (tifffile cannot encode it without imagecodecs)."""
    return b"".join(bytes([len(run) - 1]) + run for run in (data[i : i + 128] for i in range(0, len(data), 128)))


def peak_bytes(call) -> int:
    """Peak memory Python and numpy allocate during `call()` (a UserError it raises is swallowed)."""
    tracemalloc.start()
    try:
        call()
    except UserError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --- stacks, channels and axes -----------------------------------------------------------------------------------


def test_imagej_hyperstack_reads_every_slice_and_channel_exactly(folder):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65535, size=(5, 2, 12, 10), dtype=np.uint16)  # ZCYX
    path = folder / "cells.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})

    info = tiff.stack_info(path)
    assert (info.planes, info.height, info.width, info.channels, info.dtype) == (5, 12, 10, 2, "uint16")
    assert (info.axes, info.plane_axes) == ("ZCYX", "Z")
    assert info.describe() == "5 slices (Z) of 10x12, 2 channels, 16-bit"

    stack = tiff.read_stack(path)
    assert stack.dtype == np.uint16 and stack.shape == (5, 12, 10, 2)
    np.testing.assert_array_equal(stack, np.moveaxis(data, 1, -1))


def test_ome_tiff_time_series_puts_time_points_first_and_channels_last(folder):
    data = np.random.default_rng(1).integers(0, 255, size=(3, 2, 8, 9), dtype=np.uint8)  # TCYX
    path = folder / "timelapse.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCYX"})

    info = tiff.stack_info(path)
    assert (info.planes, info.channels, info.plane_axes) == (3, 2, "T")
    assert info.describe().startswith("3 time points (T) of 9x8, 2 channels")
    np.testing.assert_array_equal(tiff.read_stack(path), np.moveaxis(data, 1, -1))


def test_two_plane_axes_are_flattened_in_file_order(folder):
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)  # TZYX
    path = folder / "tz.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})

    info = tiff.stack_info(path)
    assert (info.planes, info.plane_axes, info.channels) == (6, "TZ", 1)
    assert info.describe() == "6 planes (TZ) of 5x4, 1 channel, 16-bit"
    np.testing.assert_array_equal(tiff.read_stack(path), data.reshape(6, 4, 5, 1))


def test_plain_2d_image_is_one_plane_of_one_channel(folder):
    image = np.arange(6 * 7, dtype=np.uint8).reshape(6, 7)
    path = folder / "plain.tif"
    tifffile.imwrite(path, image)

    info = tiff.stack_info(path)
    assert (info.planes, info.channels, info.plane_axes) == (1, 1, "")
    assert info.describe() == "7x6, 1 channel, 8-bit"
    stack = tiff.read_stack(path)
    assert stack.shape == (1, 6, 7, 1) and stack.dtype == np.uint8
    np.testing.assert_array_equal(stack[0, ..., 0], image)


@pytest.mark.parametrize("samples", [3, 4])
def test_rgb_and_rgba_keep_their_samples_as_channels(folder, samples):
    image = np.random.default_rng(2).integers(0, 255, size=(6, 7, samples), dtype=np.uint8)
    path = folder / "colour.tif"
    tifffile.imwrite(path, image, photometric="rgb")

    assert tiff.stack_info(path).channels == samples
    np.testing.assert_array_equal(tiff.read_stack(path), image[np.newaxis])


def test_plain_multipage_files_are_read_as_pages_whatever_tifffile_calls_the_axis(folder):
    data = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    with_shape, without = folder / "shaped.tif", folder / "bare.tif"
    tifffile.imwrite(with_shape, data, photometric="minisblack")  # tifffile's JSON metadata: axis "Q" (unknown)
    tifffile.imwrite(without, data, photometric="minisblack", metadata=None)  # no metadata: axis "I" (sequence)

    assert tiff.stack_info(with_shape).axes == "QYX" and tiff.stack_info(without).axes == "IYX"
    for path in (with_shape, without):
        assert tiff.stack_info(path).describe() == "3 pages of 5x4, 1 channel, 8-bit"
        np.testing.assert_array_equal(tiff.read_stack(path), data[..., np.newaxis])


def test_bigtiff_within_the_limits_reads_normally(folder):
    data = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5)
    path = folder / "big.tif"
    tifffile.imwrite(path, data, bigtiff=True, photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
    np.testing.assert_array_equal(tiff.read_stack(path), data[..., np.newaxis])


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "zlib"},
        {"compression": "zlib", "predictor": True, "tile": (16, 16)},
        {"compression": "lzma", "rowsperstrip": 3},
    ],
)
def test_compressed_stacks_read_exactly(folder, options):
    data = np.random.default_rng(3).integers(0, 4096, size=(2, 20, 30), dtype=np.uint16)
    path = folder / "compressed.tif"
    tifffile.imwrite(path, data, photometric="minisblack", **options)
    np.testing.assert_array_equal(tiff.read_stack(path), data[..., np.newaxis])


def test_packbits_image_reads_exactly(folder):
    image = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    path = folder / "packbits.tif"
    tifffile.imwrite(path, np.zeros_like(image), rowsperstrip=20, metadata=None)
    replace_strip(path, packbits(image.tobytes()), compression=32773)
    np.testing.assert_array_equal(tiff.read_stack(path)[0, ..., 0], image)


# --- dtypes ------------------------------------------------------------------------------------------------------


def test_float32_is_kept_exactly(folder):
    image = np.array([[-1.5, 0.0, 3.25e-7], [1e30, np.nan, np.inf]], dtype=np.float32)
    path = folder / "float.tif"
    tifffile.imwrite(path, image)
    assert tiff.stack_info(path).describe() == "3x2, 1 channel, 32-bit float"
    stack = tiff.read_stack(path)
    assert stack.dtype == np.float32
    np.testing.assert_array_equal(stack[0, ..., 0], image)


def test_big_endian_files_as_imagej_writes_them_read_the_same(folder):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) * 1000
    path = folder / "motorola.tif"
    tifffile.imwrite(path, data, byteorder=">", photometric="minisblack")
    stack = tiff.read_stack(path)
    assert stack.dtype == np.uint16 and stack.dtype.isnative
    np.testing.assert_array_equal(stack, data[..., np.newaxis])


def test_twelve_bit_data_in_uint16_keeps_its_values(folder):
    image = np.array([[0, 1, 2048, 4095]], dtype=np.uint16)
    path = folder / "camera.tif"
    tifffile.imwrite(path, image)
    stack = tiff.read_stack(path)
    assert stack.dtype == np.uint16 and stack[0, 0, :, 0].tolist() == [0, 1, 2048, 4095]


@pytest.mark.parametrize(
    ("values", "file_dtype", "result_dtype"),
    [
        ([-300, 0, 7], np.int16, np.float32),  # negatives: float32 holds them exactly
        ([0, 7, 32767], np.int16, np.uint16),
        ([0, 70000], np.uint32, np.float32),  # over uint16
        ([0, 65535], np.uint32, np.uint16),
        ([-5, 100], np.int32, np.float32),
        ([0, 1], np.bool_, np.uint8),
        ([0.5, -2.0], np.float64, np.float32),
        ([0.5, -2.0], np.float16, np.float32),
    ],
)
def test_other_dtypes_become_uint16_uint8_or_float32_with_the_same_values(folder, values, file_dtype, result_dtype):
    image = np.array([values], dtype=file_dtype)
    path = folder / "values.tif"
    tifffile.imwrite(path, image)
    assert tiff.stack_info(path).dtype == np.dtype(file_dtype).name  # the header's, not the result's
    stack = tiff.read_stack(path)
    assert stack.dtype == result_dtype
    assert stack[0, 0, :, 0].tolist() == image[0].astype(result_dtype).tolist() == [float(v) for v in values]


def test_complex_pixels_are_refused(folder):
    path = folder / "fft.tif"
    tifffile.imwrite(path, np.ones((4, 4), np.complex64))
    assert "complex" in refused(tiff.stack_info, path)


# --- hostile and damaged files -----------------------------------------------------------------------------------


def test_1000_pages_are_read_and_1001_refused(folder):
    pages = np.zeros((1001, 4, 4), np.uint8)
    accepted, too_many = folder / "1000.tif", folder / "1001.tif"
    tifffile.imwrite(accepted, pages[:1000], photometric="minisblack", metadata=None)
    tifffile.imwrite(too_many, pages, photometric="minisblack", metadata=None)

    assert tiff.stack_info(accepted).planes == 1000
    message = refused(tiff.stack_info, too_many)
    assert "more than 1000 pages" in message and "Make Substack" in message
    refused(tiff.read_stack, too_many)


def test_huge_plane_declared_in_a_tiny_file_is_refused_without_decoding(folder):
    path = folder / "liar.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), metadata=None)
    patch_tags(path, ImageWidth=40000, ImageLength=40000)
    assert path.stat().st_size < 1024

    peak = peak_bytes(lambda: tiff.read_stack(path))
    message = refused(tiff.read_stack, path)
    assert "40000x40000" in message and "100 megapixels" in message
    assert peak < 4 * 1024**2


def test_compressed_plane_over_the_pixel_limit_is_refused_before_decoding(folder):
    side, tile = 10016, 2048  # 100.3 megapixels of zeros: 100 MB decoded, a few hundred KB on disk
    zeros = np.zeros((tile, tile), np.uint8)
    path = folder / "bomb.tif"
    tifffile.imwrite(
        path, (zeros for _ in range((-(-side // tile)) ** 2)), shape=(side, side), dtype=np.uint8,
        tile=(tile, tile), compression="zlib",
    )  # fmt: skip
    assert path.stat().st_size < 2 * 1024**2

    start = time.perf_counter()
    peak = peak_bytes(lambda: tiff.read_stack(path))
    assert time.perf_counter() - start < 1.0 and peak < 8 * 1024**2
    assert "100 megapixels" in refused(tiff.read_stack, path)


BOMBS = {  # a few KB of stored data that unpack to 16 MB, for a 64x64 uint8 strip of 4 KB
    "zip": (8, lambda: zlib.compress(bytes(16 * 1024**2), 9)),
    "lzma": (34925, lambda: lzma.compress(bytes(4096), preset=0) + lzma.compress(bytes(16 * 1024**2), preset=0)),
    "packbits": (32773, lambda: bytes([0x81, 0]) * (16 * 1024**2 // 128)),  # each pair: 128 zeros
}


@pytest.mark.parametrize("measured", [False, True], ids=["installed-decoder", "measured-first"])
@pytest.mark.parametrize("codec", sorted(BOMBS))
def test_segment_that_unpacks_past_its_strip_is_refused_in_bounded_memory(folder, monkeypatch, codec, measured):
    # imagecodecs' decoders stop at the expected size; tifffile's fallbacks (no imagecodecs) do not, and
    # read_stack measures the data first. "measured-first" takes that path whatever is installed.
    if measured:
        monkeypatch.setattr(tiff, "_codec_bounds_output", lambda code: False)
    compression, make = BOMBS[codec]
    path = folder / f"{codec}_bomb.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), metadata=None)
    replace_strip(path, make(), compression=compression)

    tiff.stack_info(path)  # the header is consistent; only the data lies
    assert peak_bytes(lambda: tiff.read_stack(path)) < 4 * 1024**2
    if measured:
        assert "unpacks to more than" in refused(tiff.read_stack, path)
        return
    try:  # imagecodecs refuses (ZIP, PackBits) or stops at the strip's 4 KB (LZMA)
        assert tiff.read_stack(path).shape == (1, 64, 64, 1)
    except UserError:
        assert "damaged" in refused(tiff.read_stack, path)


def test_measured_segments_of_honest_files_read_exactly(folder, monkeypatch):
    monkeypatch.setattr(tiff, "_codec_bounds_output", lambda code: False)
    data = np.random.default_rng(6).integers(0, 4096, size=(2, 20, 30), dtype=np.uint16)
    for options in ({"compression": "zlib", "predictor": True, "tile": (16, 16)}, {"compression": "lzma"}):
        path = folder / "honest.tif"
        tifffile.imwrite(path, data, photometric="minisblack", **options)
        np.testing.assert_array_equal(tiff.read_stack(path), data[..., np.newaxis])
    image = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    tifffile.imwrite(path, np.zeros_like(image), rowsperstrip=20, metadata=None)
    replace_strip(path, packbits(image.tobytes()), compression=32773)
    np.testing.assert_array_equal(tiff.read_stack(path)[0, ..., 0], image)


def test_lzw_and_jpeg_files_read_through_imagecodecs(folder):
    pytest.importorskip("imagecodecs")
    data = np.random.default_rng(7).integers(0, 65535, size=(3, 20, 30), dtype=np.uint16)
    path = folder / "lzw.tif"
    tifffile.imwrite(path, data, photometric="minisblack", compression="lzw")
    np.testing.assert_array_equal(tiff.read_stack(path), data[..., np.newaxis])

    gradient = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    path = folder / "jpeg.tif"
    tifffile.imwrite(path, gradient, compression="jpeg")
    stack = tiff.read_stack(path)
    assert stack.shape == (1, 64, 64, 1) and stack.dtype == np.uint8
    assert np.abs(stack[0, ..., 0].astype(int) - gradient).max() <= 8  # lossy


def test_jpeg_segment_claiming_a_huge_frame_is_refused_before_decoding(folder):
    pytest.importorskip("imagecodecs")
    path = folder / "jpeg_bomb.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), compression="jpeg")
    raw = bytearray(path.read_bytes())
    frame = raw.index(b"\xff\xc0")  # the SOF0 header of the strip: length, precision, height, width
    struct.pack_into(">HH", raw, frame + 5, 30000, 30000)
    path.write_bytes(bytes(raw))

    peak = peak_bytes(lambda: tiff.read_stack(path))  # imagecodecs alone allocates 900 MB for this strip
    assert "damaged" in refused(tiff.read_stack, path)
    assert peak < 4 * 1024**2


def test_unsupported_compression_is_refused_by_name(folder):
    path = folder / "j2k.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), metadata=None)
    patch_tags(path, Compression=34712)
    message = refused(tiff.stack_info, path)
    assert "JPEG2000" in message and "LZW or ZIP" in message


def test_tile_far_larger_than_its_image_is_refused(folder):
    path = folder / "tile.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), tile=(16, 16), compression="zlib", metadata=None)
    patch_tags(path, TileWidth=65520, TileLength=65520)  # still one tile: 4 GB to unpack
    assert "tiles larger than its image" in refused(tiff.stack_info, path)


def test_decoded_size_over_the_limit_is_refused(folder):
    path = folder / "wide.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 16), np.uint16), photometric="minisblack", planarconfig="contig",
                     rowsperstrip=4, metadata=None)  # fmt: skip
    patch_tags(path, ImageWidth=10000, ImageLength=10000, RowsPerStrip=10000)  # 100 MP x 16 channels x 2 bytes

    message = refused(tiff.stack_info, path)
    assert "3.0 GB" in message and "limit is 2 GB" in message


def test_ome_metadata_declaring_a_billion_planes_is_refused_before_tifffile_lists_them(folder):
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="4" SizeY="4" SizeZ="1" SizeC="1"'
        ' SizeT="10000000"><Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData IFD="0" PlaneCount="1"/>'
        "</Pixels></Image></OME>"
    )
    path = folder / "lying.ome.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), description=xml, metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome

    peak = peak_bytes(lambda: tiff.stack_info(path))  # tifffile alone builds a list of 10 million planes
    assert "OME metadata" in refused(tiff.stack_info, path)
    assert peak < 16 * 1024**2


@pytest.mark.parametrize(
    ("channels", "accepted"),
    [(16, True), (17, False)],
)
def test_at_most_16_channels(folder, channels, accepted):
    path = folder / "spectral.tif"
    tifffile.imwrite(path, np.zeros((channels, 4, 5), np.uint8), imagej=True, metadata={"axes": "CYX"})
    if accepted:
        assert tiff.read_stack(path).shape == (1, 4, 5, 16)
    else:
        message = refused(tiff.stack_info, path)
        assert "17 channels" in message and "at most 16" in message


def test_channel_axis_and_samples_per_pixel_together_are_refused(folder):
    path = folder / "rgb_channels.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 5, 3), np.uint8), ome=True, photometric="rgb", metadata={"axes": "CYXS"})
    assert "both a channel axis" in refused(tiff.stack_info, path)


@pytest.mark.parametrize("kind", ["plain", "zlib", "imagej", "ome"])
def test_truncated_file_is_refused_as_damaged(folder, kind):
    data = np.random.default_rng(4).integers(0, 255, size=(4, 32, 32), dtype=np.uint8)
    path = folder / f"{kind}.tif"
    if kind == "plain":
        tifffile.imwrite(path, data[0])
    elif kind == "zlib":
        tifffile.imwrite(path, data, compression="zlib", photometric="minisblack")
    elif kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    else:
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX"})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert "damaged" in refused(tiff.read_stack, path)


def test_random_bytes_empty_and_oversized_files_are_refused(folder):
    noise = folder / "noise.tif"
    noise.write_bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "damaged or not a TIFF" in refused(tiff.stack_info, noise)
    (fake := folder / "fake.tif").write_bytes(b"II*\x00" + b"\xff" * 60)  # a TIFF signature, then nonsense
    refused(tiff.read_stack, fake)

    empty = folder / "empty.tif"
    empty.touch()
    assert "empty" in refused(tiff.read_stack, empty)

    oversized = folder / "oversized.tif"
    with oversized.open("wb") as handle:
        handle.truncate(tiff.MAX_FILE_BYTES + 1)  # sparse: no disk space used
    assert "256 MB" in refused(tiff.stack_info, oversized)

    assert "cannot read" in refused(tiff.stack_info, folder / "missing.tif")
