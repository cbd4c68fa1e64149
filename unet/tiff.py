"""Reading scientific TIFF files (z-stacks, time series, multi-channel, 16-bit, float, OME-TIFF, ImageJ, BigTIFF).

The image readers (`unet.images` for uploads, the dataset and inference pages through it) call `stack_info` to
describe a TIFF and `read_stack` to get all of its planes as one [planes, height, width, channels] array, where
OpenCV would keep only the first page.

A TIFF header can declare anything, so everything is checked from the header before a pixel is decoded:
the file size, the number of pages, the plane size, the channels, the decoded size, the compression, and that
the data the header points at lies inside the file. `tifffile` is opened so that it never reads a file other
than the one given (OME and Micro-Manager data sets can point at their neighbours) and uses only its generic,
ImageJ, OME and tifffile-"shaped" layouts: the vendor formats it also knows build large tables from numbers in
their metadata before anything could check them. OME metadata is checked for the same reason before tifffile
parses it.

Compressed data can unpack to far more than it declares. Only compressions whose output is bounded are read:
LZW, ZIP/Deflate, LZMA, PackBits and Zstd through `imagecodecs`, which stops at the size tifffile expects;
ZIP/LZMA/PackBits through tifffile's own fallbacks (no `imagecodecs`), which have no limit, after `read_stack`
has measured, one segment at a time in bounded memory, what each segment unpacks to; and JPEG, whose decoder
allocates what the JPEG stream's own header says, after that header is checked against the tile or strip.
Others (JPEG 2000, PNG, WebP, JPEG XL, CCITT, ...) are refused by name. Errors are `UserError`s that name the
file by its name only, never a server path.
"""

from __future__ import annotations

import lzma
import math
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import tifffile

from unet.errors import UserError

TIFF_EXTENSIONS = (".tif", ".tiff")
MAX_PAGES = 1000  # pages (IFDs) in one file, and image planes in one stack
MAX_PLANE_PIXELS = 100_000_000  # height*width of one plane; the same as unet.images.MAX_PIXELS (not imported: cycle)
MAX_DECODED_BYTES = 2 * 1024**3  # the whole decoded array, counted in the wider of the file's and the result's dtype
MAX_CHANNELS = 16
MAX_FILE_BYTES = 256 * 1024**2  # on disk; the same as unet.images.MAX_FILE_BYTES
MAX_METADATA_CHARS = 8 * 1024**2  # the first page's ImageDescription (OME-XML, ImageJ or JSON text) that is parsed

_SPATIAL_AXES = "YX"
_CHANNEL_AXES = "CS"  # C: channels; S: samples per pixel (RGB)
# tifffile's layouts for vendor formats, turned off: they read sibling files or size tables from metadata numbers.
# Their pages still read, as a plain stack of pages.
_VENDOR_FORMATS = (
    "lsm", "mmstack", "ndtiff", "fluoview", "stk", "sis", "svs", "scn", "qpi", "ndpi", "bif", "avs", "eer",
    "philips", "scanimage", "nih", "mdgel", "indica",
)  # fmt: skip
_UNCOMPRESSED = 1
_DEFLATE = frozenset({8, 32946, 50013})  # ZIP / Adobe Deflate / Pixtiff Deflate
_LZMA = 34925
_PACKBITS = 32773
_MEASURABLE = _DEFLATE | {_LZMA, _PACKBITS}  # unpacked sizes this module can measure without keeping the output
_BYTE_CODECS = _MEASURABLE | {5, 50000, 34926}  # + LZW, Zstd: tifffile passes them the expected output size
_JPEG = frozenset({7, 33007, 34892})  # JPEG, ALT_JPEG, JPEG_LOSSY (not old-style JPEG, 6)
_READABLE_COMPRESSIONS = _BYTE_CODECS | _JPEG | {_UNCOMPRESSED}
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15, not DHT, JPG, DAC
_MAX_SEGMENT_BYTES = 64 * 1024**2  # one tile, unpacked, where tiles are larger than the image itself
_OME_COUNT_LIMIT = 1_000_000  # any count in OME-XML that tifffile turns into a list or a range
_INFLATE_CHUNK = 16 * 1024**2  # bytes held at once while measuring a compressed segment
_BIT_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))  # FillOrder=2
_PLANE_WORDS = {"Z": "slices", "T": "time points"}


@dataclass(frozen=True)
class StackInfo:
    """What a TIFF's header declares about its first image series; nothing is decoded to know it."""

    planes: int  # 2D planes: the product of the non-spatial, non-channel axes (1 for a plain image)
    height: int
    width: int
    channels: int
    dtype: str  # the file's numpy dtype name, e.g. "uint16", "float32" (read_stack may return another, see there)
    axes: str  # tifffile's axes of the series, e.g. "ZCYX", "TYX", "YXS", "QYX" ("QYXC": see _channels_last)
    plane_axes: str  # the plane axes in file order, e.g. "Z", "TZ", ""; Q (unknown) and I (sequence) kept as they are

    def describe(self) -> str:
        """Plain words for the user, e.g. "25 slices (Z) of 512x512, 2 channels, 16-bit"."""
        size = f"{self.width}x{self.height}"
        channels = f"{self.channels} channel{'s' if self.channels != 1 else ''}"
        text = f"{size}, {channels}, {_dtype_words(self.dtype)}"
        if self.planes == 1:
            return text
        if len(self.plane_axes) == 1 and self.plane_axes in _PLANE_WORDS:
            return f"{self.planes} {_PLANE_WORDS[self.plane_axes]} ({self.plane_axes}) of {text}"
        if set(self.plane_axes) <= set("QI"):  # tifffile's "unknown" and "sequence": pages, as far as anyone knows
            return f"{self.planes} pages of {text}"
        return f"{self.planes} planes ({self.plane_axes}) of {text}"


def stack_info(path: Path) -> StackInfo:
    """Describe a TIFF from its header, refusing with a `UserError` anything `read_stack` would refuse."""
    path = Path(path)
    with _open(path) as tif:
        return _inspect(tif, path.name)[0]


def read_stack(path: Path) -> np.ndarray:
    """All planes of the first series as [planes, height, width, channels].

    The dtype is the file's for bool (as uint8 0/1), uint8, uint16 and float32; float16/float64 become float32;
    other integers become uint16 when every value fits in 0..65535 and float32 otherwise; int8 becomes uint8
    when no value is negative. Alpha is kept: an RGBA file has 4 channels.
    """
    path = Path(path)
    with _open(path) as tif:
        info, series = _inspect(tif, path.name)
        _check_compressed_sizes(tif, series, path.name)
        try:
            data = series.asarray()
        except Exception:  # any decoding failure of tifffile or a codec (ValueError, zlib.error, OSError, ...)
            raise _damaged(path.name) from None
    declared = (info.planes, info.height, info.width, info.channels)
    if data.size != math.prod(declared) or tuple(data.shape) != tuple(series.shape):
        raise _damaged(path.name)  # tifffile fell back to another shape: the header does not match the data
    return _convert_dtype(_to_phwc(data, info.axes, declared))


@contextmanager
def _open(path: Path) -> Iterator[tifffile.TiffFile]:
    """Open a TIFF after the on-disk size checks, as tifffile is configured here (see the module docstring)."""
    check_file_size(path)
    flags = {f"is_{name}": False for name in _VENDOR_FORMATS if name in tifffile.TIFF.FILE_FLAGS}
    try:
        # tifffile raises TiffFileError, ValueError, OSError, struct.error, IndexError, KeyError... on a damaged
        # header; all of them mean the same to the user, hence the broad except (around tifffile only).
        tif = tifffile.TiffFile(path, _multifile=False, **flags)
    except Exception:
        raise _damaged(path.name) from None
    try:
        yield tif
    finally:
        tif.close()


def _inspect(tif: tifffile.TiffFile, name: str) -> tuple[StackInfo, tifffile.TiffPageSeries]:
    """Run every header check, cheapest first; return what the header declares and the first series."""
    _check_page_count(tif, name)
    _check_metadata(tif, name)
    try:
        series = tif.series[0]
        shape = tuple(int(n) for n in series.shape)
        axes = str(series.axes)
        dtype = series.dtype
        keyframe = series.keyframe
    except Exception:  # tifffile's layout parsers fail in many ways on damaged files; see _open
        raise _damaged(name) from None
    _check_dtype(dtype, name)
    axes = _channels_last(tif, shape, axes)
    info = _layout(shape, axes, np.dtype(dtype), name)
    _check_sizes(info, name)
    _check_compression(keyframe, name)
    _check_segment_shape(keyframe, name)
    _check_data_in_file(series, tif.filehandle.size, name)
    return info, series


def _channels_last(tif: tifffile.TiffFile, shape: tuple[int, ...], axes: str) -> str:
    """The axes of an array that `tifffile.imwrite` stored without saying its axes, read channels-last when its
    last axis is short: NumPy, scikit-image and napari hold a 2-channel stack as (5, 64, 64, 2), which tifffile
    writes as 320 pages of 64x2 pixels ("QQYX"); read as written, that is 320 images no one meant (issue #25).

    Only tifffile's own "shaped" files without recorded axes qualify (the array's shape is in the file), and only
    when the last axis has at most MAX_CHANNELS entries and both axes before it are at least 4 times longer.
    """
    recorded = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
    if not recorded or "axes" in recorded or len(axes) < 3 or axes != "Q" * (len(axes) - 2) + "YX":
        return axes
    if shape[-1] > MAX_CHANNELS or min(shape[-3], shape[-2]) < 4 * shape[-1]:
        return axes
    return axes[:-3] + "YXC"


def _damaged(name: str) -> UserError:
    return UserError(f"'{name}' is damaged or not a TIFF file and cannot be read")


def check_file_size(path: Path, advice: str = "split the stack into smaller files or crop it first",
                    limit: int | None = None) -> None:
    """Refuse a missing, empty or oversized file by its size on disk, before opening it (every image reader's
    first check: `unet.images` calls it for PNG, JPEG and the rest too)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UserError(f"cannot read '{path.name}' ({exc.strerror or 'file not found'})") from None
    if size == 0:
        raise UserError(f"'{path.name}' is an empty file (0 bytes)")
    limit = MAX_FILE_BYTES if limit is None else limit
    if size > limit:
        raise UserError(f"'{path.name}' is {size / 1024**2:.1f} MB; files over {limit / 1024**2:.0f} MB are "
                        f"refused: {advice}")


def _check_page_count(tif: tifffile.TiffFile, name: str) -> None:
    """Refuse over MAX_PAGES pages, following the IFD chain no further than page MAX_PAGES+1.

    `len(tif.pages)` walks the whole chain, and a file can chain millions of tiny IFDs. `TiffPages._seek(i)` reads
    only each IFD's tag count and next-IFD offset, stops at index i, ends the chain on a bad offset and raises
    IndexError when the file has fewer pages. Once it has run, every later page access (and `len`) reuses the
    offsets it found, and a file of one page cannot make tifffile invent "virtual" pages from the file size.
    """
    try:
        tif.pages._seek(MAX_PAGES)
    except IndexError:
        _check_chain_end(tif, name)  # at most MAX_PAGES pages
        return
    except Exception:
        raise _damaged(name) from None
    raise UserError(
        f"'{name}' has more than {MAX_PAGES} pages; split the stack into files of at most {MAX_PAGES} pages "
        "(e.g. in Fiji: Image > Stacks > Tools > Make Substack)"
    )


def _check_chain_end(tif: tifffile.TiffFile, name: str) -> None:
    """Refuse a page chain that points past its last readable page: the file was cut short (a partial upload).

    tifffile ends the chain there with only a log line, and would read the pages before the cut as a valid,
    shorter stack. A complete chain ends with a next-page offset of 0.
    """
    try:
        handle = tif.filehandle
        handle.seek(tif.pages.next_page_offset)
        raw = handle.read(tif.tiff.offsetsize)
        following = struct.unpack(tif.tiff.offsetformat, raw)[0] if len(raw) == tif.tiff.offsetsize else -1
    except Exception:  # see _open
        raise _damaged(name) from None
    if following != 0:
        raise _damaged(name)


def _check_metadata(tif: tifffile.TiffFile, name: str) -> None:
    """Refuse metadata text too long to parse, and OME-XML whose numbers tifffile would turn into huge lists."""
    try:
        description = tif.pages.first.description or ""
        is_ome = bool(tif.is_ome)
    except Exception:
        raise _damaged(name) from None
    if len(description) > MAX_METADATA_CHARS:
        raise UserError(
            f"'{name}' carries {len(description) / 1024**2:.0f} MB of metadata text, over the "
            f"{MAX_METADATA_CHARS // 1024**2} MB that are read; save the image again without the extra metadata "
            "(e.g. in Fiji: File > Save As > Tiff...)"
        )
    if is_ome:
        _check_ome(description, tif, name)


def _check_ome(xml: str, tif: tifffile.TiffFile, name: str) -> None:
    """Bound every OME-XML number that tifffile's OME parser allocates by (lists of planes, modulo ranges).

    XML that does not parse is left to tifffile, which then ignores it and reads the pages as a plain stack.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return
    lie = UserError(f"'{name}' has OME metadata that declares more image data than the file holds; it is damaged")
    try:
        first_page_pixels = max(1, math.prod(tif.pages.first.shape))
        tiffdata_planes = 0
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            attrib = element.attrib
            if tag == "Pixels":
                sizes = {axis: int(attrib.get(f"Size{axis}", 1)) for axis in "XYZCT"}
                if min(sizes.values()) < 0:
                    raise lie
                if sizes["Z"] * sizes["C"] * sizes["T"] > _OME_COUNT_LIMIT:
                    raise lie
                if math.prod(sizes.values()) // first_page_pixels > _OME_COUNT_LIMIT:
                    raise lie
            elif tag == "TiffData":
                counts = [int(attrib.get(key, 0)) for key in ("IFD", "NumPlanes", "PlaneCount")]
                firsts = [int(attrib.get(f"First{axis}", 0)) for axis in "ZCT"]
                if min(counts + firsts) < 0 or max(counts + firsts) > _OME_COUNT_LIMIT:
                    raise lie
                tiffdata_planes += max(counts[1:]) or MAX_PAGES  # 0 means "all pages": at most MAX_PAGES
                if tiffdata_planes > _OME_COUNT_LIMIT:
                    raise lie
            elif tag[:-1].endswith("Along") and "Start" in attrib:  # modulo annotation: numpy.arange(Start, End, Step)
                start, end = float(attrib["Start"]), float(attrib.get("End", attrib["Start"]))
                step = float(attrib.get("Step", 1))
                labels = (end + step - start) / step if step else math.inf
                if not math.isfinite(labels) or labels > _OME_COUNT_LIMIT:
                    raise lie
    except (ValueError, TypeError, OverflowError):  # a number that is not one
        raise lie from None


def _check_dtype(dtype: object, name: str) -> None:
    """Refuse what cannot become image pixels: unknown sample formats and complex numbers."""
    if dtype is None:
        raise UserError(
            f"'{name}' stores pixels in a sample format that cannot be read (e.g. 24-bit or packed integers); "
            "save it as 8-bit, 16-bit or 32-bit float"
        )
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise UserError(
            f"'{name}' stores complex numbers ({np.dtype(dtype).name}), which are not image pixels; "
            "convert it to real values (e.g. the magnitude) first"
        )
    if kind not in "biuf":
        raise UserError(f"'{name}' stores {np.dtype(dtype).name} values, which are not image pixels")


def _layout(shape: tuple[int, ...], axes: str, dtype: np.dtype, name: str) -> StackInfo:
    """Find the spatial, channel and plane axes of the series; refuse layouts that are not a stack of images."""
    if len(shape) != len(axes):
        raise _damaged(name)
    for axis, size in zip(axes, shape, strict=True):
        if size == 0:
            raise UserError(f"'{name}' declares an empty image (its {axis} axis has length 0); it holds no pixels")
    if any(axes.count(axis) != 1 for axis in _SPATIAL_AXES):
        raise UserError(f"'{name}' holds no 2D image (no single Y and X axis in '{axes}') and cannot be read")
    if any(axes.count(axis) > 1 for axis in _CHANNEL_AXES):
        raise _damaged(name)
    sizes = {axis: shape[axes.index(axis)] for axis in _CHANNEL_AXES if axis in axes}
    if sizes.get("C", 1) > 1 and sizes.get("S", 1) > 1:
        raise UserError(
            f"'{name}' has both a channel axis ({sizes['C']} channels) and {sizes['S']} samples per pixel; "
            "save it with one channel axis (e.g. in Fiji: Image > Color > Make Composite, then save)"
        )
    plane_axes = "".join(axis for axis in axes if axis not in _SPATIAL_AXES + _CHANNEL_AXES)
    planes = math.prod(size for axis, size in zip(axes, shape, strict=True) if axis in plane_axes)
    return StackInfo(
        planes=planes,
        height=shape[axes.index("Y")],
        width=shape[axes.index("X")],
        channels=max(sizes.values(), default=1),
        dtype=dtype.name,
        axes=axes,
        plane_axes=plane_axes,
    )


def _check_sizes(info: StackInfo, name: str) -> None:
    """Refuse stacks too large to decode: channels, plane size, plane count, then the whole decoded size."""
    if info.channels > MAX_CHANNELS:
        raise UserError(
            f"'{name}' has {info.channels} channels; at most {MAX_CHANNELS} are supported: keep only the channels "
            "you need (e.g. in Fiji: Image > Color > Split Channels, then Merge Channels)"
        )
    plane = info.height * info.width
    if plane > MAX_PLANE_PIXELS:
        raise UserError(
            f"'{name}' has {info.width}x{info.height}-pixel planes ({plane // 1_000_000} megapixels); planes over "
            f"{MAX_PLANE_PIXELS // 1_000_000} megapixels are refused: crop or downscale it first"
        )
    if info.planes > MAX_PAGES:
        raise UserError(
            f"'{name}' holds {info.planes} image planes ({info.plane_axes}); split the stack into files of at most "
            f"{MAX_PAGES} planes (e.g. in Fiji: Image > Stacks > Tools > Make Substack)"
        )
    itemsize = max(np.dtype(info.dtype).itemsize, _result_itemsize(np.dtype(info.dtype)))
    decoded = info.planes * plane * info.channels * itemsize
    if decoded > MAX_DECODED_BYTES:
        raise UserError(
            f"'{name}' would take {decoded / 1024**3:.1f} GB of memory once decoded; the limit is "
            f"{MAX_DECODED_BYTES / 1024**3:.0f} GB: split the stack or crop it first"
        )


def _check_compression(keyframe: tifffile.TiffPage, name: str) -> None:
    """Refuse, by name, compressions that are not read here or that tifffile cannot decode in this environment."""
    code = int(keyframe.compression)
    if code in _READABLE_COMPRESSIONS and code in tifffile.TIFF.DECOMPRESSORS:  # `in` resolves the codec
        return
    try:
        label = tifffile.COMPRESSION(code).name.replace("_", " ")
    except ValueError:
        label = f"an unknown method ({code})"
    raise UserError(
        f"'{name}' is compressed with {label}, which is not read here; save it uncompressed or with LZW or "
        "ZIP (Deflate) compression"
    )


def _check_segment_shape(keyframe: tifffile.TiffPage, name: str) -> None:
    """Refuse tiles far larger than the image: each is unpacked whole, so a 60000x60000 tile on a 16x16 image
    would take gigabytes. (Strips are never taller than the image: tifffile clips RowsPerStrip.)"""
    try:
        segment = math.prod(keyframe.chunks) * keyframe.dtype.itemsize
        page = math.prod(keyframe.shaped) * keyframe.dtype.itemsize
    except Exception:  # see _open
        raise _damaged(name) from None
    if segment > max(page, _MAX_SEGMENT_BYTES):
        raise UserError(f"'{name}' declares tiles larger than its image ({keyframe.chunks}); it is damaged")


def _check_data_in_file(series: tifffile.TiffPageSeries, file_size: int, name: str) -> None:
    """Refuse a header that points at data past the end of the file (a truncated or lying file)."""
    try:
        offset = series.dataoffset
        if offset is not None:  # one contiguous block, which tifffile reads in one go
            if offset + series.nbytes > file_size:
                raise _damaged(name)
            return
        for page in series:
            if page is None:
                continue  # a plane the metadata lists but no page holds: tifffile reads it as zeros
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            if offsets.shape != counts.shape or np.any(offsets < 0) or np.any(offsets + counts > file_size):
                raise _damaged(name)
    except UserError:
        raise
    except Exception:  # a page that does not load: see _open
        raise _damaged(name) from None


def _check_compressed_sizes(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, name: str) -> None:
    """Before decoding, refuse a compressed segment whose decoder would produce more than its tile or strip.

    A decoder that is given the expected size (imagecodecs' byte codecs) needs nothing. tifffile's own ZIP, LZMA
    and PackBits fallbacks have no output limit: each segment is measured here, holding at most _INFLATE_CHUNK
    bytes at once. A JPEG decoder allocates what the stream's frame header declares: that header is checked.
    """
    handle = tif.filehandle
    bomb = UserError(f"'{name}' is damaged: its compressed data unpacks to more than its header declares")
    try:
        if series.dataoffset is not None:
            return  # one contiguous, uncompressed block
        for page in series:
            if page is None:
                continue
            keyframe = page.keyframe  # a TiffFrame is decoded as its keyframe says; a TiffPage is its own keyframe
            code = int(keyframe.compression)
            if code == _UNCOMPRESSED:
                continue
            _check_compression(keyframe, name)
            _check_segment_shape(keyframe, name)
            if code in _JPEG:
                _check_jpeg_frames(page, keyframe, handle, bomb)
            elif not _codec_bounds_output(code):
                limit = math.prod(keyframe.chunks) * keyframe.dtype.itemsize  # a full tile or strip, unpacked
                for data in _segments(page, handle):
                    if keyframe.fillorder == 2:
                        data = data.translate(_BIT_REVERSE)
                    if _unpacked_size(data, code, limit) > limit:
                        raise bomb
    except UserError:
        raise
    except Exception:  # zlib.error, lzma.LZMAError, a page that does not load: see _open
        raise _damaged(name) from None


def _codec_bounds_output(code: int) -> bool:
    """Whether tifffile's decoder for `code` stops at the output size it is given: imagecodecs' byte codecs do
    (LZW, Deflate, LZMA, PackBits, Zstd: they raise or truncate), tifffile's pure-Python fallbacks do not."""
    decoder = tifffile.TIFF.DECOMPRESSORS[code]
    return code in _BYTE_CODECS and getattr(decoder, "__module__", "").startswith("imagecodecs")


def _segments(page: tifffile.TiffPage | tifffile.TiffFrame, handle: tifffile.FileHandle) -> Iterator[bytes]:
    """The stored bytes of each non-empty tile or strip of a page, one at a time."""
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        if offset and count:  # an empty segment is read as zeros
            handle.seek(offset)
            yield handle.read(count)


def _check_jpeg_frames(
    page: tifffile.TiffPage | tifffile.TiffFrame, keyframe: tifffile.TiffPage, handle: tifffile.FileHandle,
    bomb: UserError,
) -> None:  # fmt: skip
    """Refuse JPEG segments whose frame header (SOF) declares more rows, columns or components than the segment
    holds: the decoder allocates what that header says (a 200-byte JPEG can claim 65535x65535 pixels)."""
    if keyframe.is_tiled:
        rows, columns = keyframe.tilelength, keyframe.tilewidth
    else:
        rows, columns = keyframe.rowsperstrip, keyframe.imagewidth
    components = keyframe.samplesperpixel if keyframe.planarconfig == 1 else 1
    tables = keyframe.jpegtables
    if tables and _jpeg_frame(bytes(tables)) is not None:
        raise bomb  # the tables stream must not define a frame of its own
    for data in _segments(page, handle):
        frame = _jpeg_frame(data)
        if frame is None:
            raise bomb  # no frame header before the image data: not a JPEG this decoder can read safely
        height, width, count = frame
        if not (0 < height <= rows and 0 < width <= columns and 0 < count <= components):
            raise bomb


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG stream's first frame header, or None where it has none."""
    index, end = 0, len(data)
    while index + 1 < end:
        if data[index] != 0xFF:
            return None  # not at a marker: a damaged stream
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # TEM, SOI, RSTn: markers without a length
            index += 2
            continue
        if marker in (0xD9, 0xDA) or index + 4 > end:  # EOI or start of scan: no frame header before the data
            return None
        if marker in _JPEG_FRAME_MARKERS:
            if index + 10 > end:
                return None
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return height, width, data[index + 9]
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    return None


def _unpacked_size(data: bytes, compression: int, limit: int) -> int:
    """Bytes `data` unpacks to, or a number over `limit` as soon as it is known to exceed it."""
    if compression in _DEFLATE:
        inflater = zlib.decompressobj()
        total, pending = 0, data
        while True:
            wanted = min(_INFLATE_CHUNK, limit + 1 - total)
            chunk = inflater.decompress(pending, wanted)
            total += len(chunk)
            pending = inflater.unconsumed_tail
            if total > limit or inflater.eof or (not pending and len(chunk) < wanted):
                return total  # zlib.decompress, like tifffile, ignores data after the end of the stream
    if compression == _LZMA:
        total, pending = 0, data
        while pending and total <= limit:  # lzma.decompress, like tifffile, reads concatenated streams
            decompressor = lzma.LZMADecompressor()
            total += len(decompressor.decompress(pending, min(_INFLATE_CHUNK, limit + 1 - total)))
            while total <= limit and not decompressor.eof and not decompressor.needs_input:
                total += len(decompressor.decompress(b"", min(_INFLATE_CHUNK, limit + 1 - total)))
            pending = decompressor.unused_data if decompressor.eof else b""
        return total
    return _packbits_size(data, limit)


def _packbits_size(data: bytes, limit: int) -> int:
    """Bytes PackBits `data` unpacks to, counted as tifffile's decoder would produce them."""
    total, index, end = 0, 0, len(data)
    while index < end and total <= limit:
        header = data[index]
        index += 1
        if header > 128:  # the next byte, repeated
            if index < end:
                total += 257 - header
            index += 1
        elif header < 128:  # the next header+1 bytes, as they are
            total += min(header + 1, end - index)
            index += header + 1
    return total


def _to_phwc(data: np.ndarray, axes: str, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Plane axes first (in file order), then Y, X, then the channel axis; flattened to [planes, H, W, C]."""
    plane_order = [i for i, axis in enumerate(axes) if axis not in _SPATIAL_AXES + _CHANNEL_AXES]
    channel_order = [i for i, axis in enumerate(axes) if axis in _CHANNEL_AXES]  # C and S: one has length 1
    order = [*plane_order, axes.index("Y"), axes.index("X"), *channel_order]
    return np.ascontiguousarray(np.transpose(data, order).reshape(shape))


def _result_itemsize(dtype: np.dtype) -> int:
    """The widest item `read_stack` may return for this file dtype (for the decoded-size limit)."""
    if dtype.kind == "b" or dtype == np.uint8:
        return 1
    if dtype == np.uint16:
        return 2
    return 4  # float32 for floats and, when values do not fit in uint16, for other integers


def _convert_dtype(data: np.ndarray) -> np.ndarray:
    """Convert to the dtypes the rest of the app handles, keeping every value (see read_stack)."""
    dtype = data.dtype
    if dtype.kind == "b":
        return data.astype(np.uint8)
    if dtype in (np.uint8, np.uint16, np.float32):
        return data
    if dtype.kind == "f":
        return data.astype(np.float32)
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if dtype == np.int8 and low >= 0:
        return data.astype(np.uint8)
    if low >= 0 and high <= np.iinfo(np.uint16).max:
        return data.astype(np.uint16)
    return data.astype(np.float32)


def _dtype_words(name: str) -> str:
    """ "16-bit", "16-bit signed", "32-bit float", "1-bit" for a dtype name."""
    dtype = np.dtype(name)
    if dtype.kind == "b":
        return "1-bit"
    bits = f"{dtype.itemsize * 8}-bit"
    return {"f": f"{bits} float", "i": f"{bits} signed"}.get(dtype.kind, bits)
