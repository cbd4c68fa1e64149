"""Reading and writing the user's image files, the one place that knows OpenCV's and Pillow's quirks.

Why each choice:
- Files are read as bytes and decoded with `cv2.imdecode`, so unicode paths work everywhere.
- `IMREAD_ANYDEPTH | IMREAD_ANYCOLOR` keeps 16-bit data and grayscale as grayscale, drops alpha and applies
  the JPEG EXIF orientation (`IMREAD_UNCHANGED` would keep alpha but ignore the orientation).
- The size is read from the header with Pillow (which reads only the header) and checked before decoding, so a
  30000x30000 PNG or a decompression bomb is refused without allocating its pixels. OpenCV's own limit is set too.
- TIFF files go to `unet.tiff` (tifffile), which reads stacks with their axes and keeps 16-bit and float values;
  `read_planes` gives every plane, `read_image` a single-plane image and refuses a stack rather than drop pages.
- Errors are `UserError`s that name the file by its name only, never a server path.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_PIXELS = 100_000_000  # per image; a 10000x10000 photo is the largest accepted
MAX_FILE_BYTES = 256 * 1024**2  # per file (unet.tiff has the same limit for TIFFs)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402  (after the limit above, which OpenCV reads once)
from PIL import Image, UnidentifiedImageError  # noqa: E402

from unet import tiff  # noqa: E402
from unet.errors import UserError  # noqa: E402

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def _check_file(path: Path) -> None:
    """Refuse empty and oversized files by their size on disk, before opening them."""
    tiff.check_file_size(Path(path), "shrink or split it first", MAX_FILE_BYTES)


def _read_bytes(path: Path) -> bytes:
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read '{path.name}' ({exc.strerror or exc})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels (of each plane, for a TIFF stack).

    TIFFs are described by `unet.tiff`: Pillow opens none with 2 or more than 4 channels (a 2-channel 16-bit
    plane of a stack was "not an image" once saved, issue #25).
    """
    path = Path(path)
    if is_tiff(path):
        info = tiff.stack_info(path)
        return info.height, info.width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Image.DecompressionBombError:
            raise UserError(f"'{path.name}' is too large: over {MAX_PIXELS // 1_000_000} megapixels") from None
        except UnidentifiedImageError:
            raise UserError(f"'{path.name}' is not an image (or a kind of image that cannot be read)") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UserError(f"'{path.name}' is damaged and cannot be read ({exc})") from None
    return height, width


def check_pixels(path: Path) -> tuple[int, int]:
    """(height, width), refusing an empty file, or an image over MAX_PIXELS, before anything decodes it.

    For a TIFF, every limit of `unet.tiff.stack_info` (pages, plane size, decoded bytes) is checked too.
    """
    if is_tiff(path):
        info = tiff.stack_info(Path(path))
        return info.height, info.width
    _check_file(Path(path))
    height, width = image_size(path)
    if height * width > MAX_PIXELS:
        raise UserError(
            f"'{Path(path).name}' is {width}x{height} pixels; images over {MAX_PIXELS // 1_000_000} megapixels "
            "are refused (shrink or tile it first)"
        )
    return height, width


def _decode(path: Path) -> np.ndarray:
    """Pixels as stored, in RGB order: HxW or HxWx3, uint8 or uint16 (other depths converted to uint8)."""
    path = Path(path)
    data = _read_bytes(path)
    check_pixels(path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS)
    except cv2.error:
        array = None
    if array is None:
        raise UserError(f"'{path.name}' is damaged, cut short or not an image, and cannot be read")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.dtype not in (np.uint8, np.uint16):
        array = to_uint8(array)
    return array


def is_tiff(path: Path) -> bool:
    return Path(path).suffix.lower() in tiff.TIFF_EXTENSIONS


@dataclass(frozen=True)
class NonFinite:
    """The NaN and infinite pixels of a float image (instruments and other tools write them for saturated or
    masked pixels), and the finite values `finite_planes` put in their place."""

    name: str
    nan: int  # pixels with NaN in some channel
    infinite: int  # pixels with +inf or -inf (and no NaN) in some channel
    pixels: int  # all pixels of the file, every plane
    low: tuple[float, ...]  # per channel: what NaN and -inf became (the file's lowest finite value)
    high: tuple[float, ...]  # per channel: what +inf became (its highest finite value)
    where: np.ndarray = field(repr=False)  # bool [P, H, W]: the pixels replaced

    def describe(self) -> str:
        """The check's words: which file, how many pixels, and what they became."""
        counts = " and ".join(f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.infinite, "infinite")) if n)
        per = " (per channel)" if len(self.low) > 1 else ""
        low = ", ".join(f"{v:.6g}" for v in self.low)
        high = ", ".join(f"{v:.6g}" for v in self.high)
        return (f"'{self.name}' has {counts} pixels (of {self.pixels}): they are left out of the intensity rule "
                f"and read as the image's lowest finite value{per} ({low}) for NaN and -inf, its highest ({high}) "
                "for +inf")


def finite_planes(planes: np.ndarray, name: str) -> tuple[np.ndarray, NonFinite | None]:
    """[P, H, W, C] float planes with NaN and -inf replaced by the lowest finite value of their channel (over the
    file) and +inf by the highest, and what was replaced (None when every value is finite or the image is of whole
    numbers). UserError naming the file when a channel holds no finite value at all."""
    if planes.dtype.kind != "f":
        return planes, None
    finite = np.isfinite(planes)
    if finite.all():
        return planes, None
    channels = planes.shape[-1]
    low, high = np.zeros(channels, planes.dtype), np.zeros(channels, planes.dtype)
    for c in range(channels):
        values = planes[..., c][finite[..., c]]
        if not values.size:
            which = f" of channel {c + 1}" if channels > 1 else ""
            raise UserError(f"every pixel{which} of '{name}' is NaN or infinite: there is no image to read")
        low[c], high[c] = values.min(), values.max()
    nan = np.isnan(planes)
    fixed = np.where(nan | np.isneginf(planes), low, np.where(np.isposinf(planes), high, planes)).astype(planes.dtype)
    where = ~finite.all(axis=-1)
    nan_pixels = nan.any(axis=-1)
    report = NonFinite(name, int(nan_pixels.sum()), int((where & ~nan_pixels).sum()), int(where.size),
                       tuple(float(v) for v in low), tuple(float(v) for v in high), where)
    return fixed, report


def read_planes_checked(path: Path) -> tuple[np.ndarray, NonFinite | None]:
    """`read_planes`, and what it replaced of a float image's NaN and infinite pixels (None when nothing)."""
    if is_tiff(path):
        return finite_planes(tiff.read_stack(Path(path)), Path(path).name)
    image = _decode(path)
    return (image[:, :, None] if image.ndim == 2 else image)[None], None


def read_planes(path: Path) -> np.ndarray:
    """Every plane of a file as [P, H, W, C], in its own dtype (uint8, uint16 or float32).

    A TIFF stack gives all its planes (Z, T, ... flattened in file order) and all its channels; any other image
    gives one plane, grayscale as one channel and colour as three (RGB). A float image's NaN and infinite pixels
    become finite (`finite_planes`), so no reader ever gets a value no rule can scale.
    """
    return read_planes_checked(path)[0]


def read_images(path: Path) -> list[tuple[str, np.ndarray]]:
    """Every 2D image of a file, each with the suffix that names it: [("", image)] for a single image, and
    [(" [plane 1]", ...), (" [plane 2]", ...)] for a stack, so predicting a stack keeps every plane."""
    planes = read_planes(path) if is_tiff(path) else None
    if planes is None or planes.shape[0] == 1:
        return [("", read_image(path) if planes is None else _plane(planes[0]))]
    return [(f" [plane {i + 1}]", _plane(plane)) for i, plane in enumerate(planes)]


def _plane(plane: np.ndarray) -> np.ndarray:
    return plane[:, :, 0] if plane.shape[2] == 1 else plane


def read_image(path: Path) -> np.ndarray:
    """A single image: HxW (one channel) or HxWxC (RGB, or the channels of a TIFF), uint8/uint16/float32.

    Alpha is dropped and the EXIF orientation applied. A stack of several planes is refused (by name, with its
    plane count) rather than reduced to its first page; `read_planes` reads stacks.
    """
    if not is_tiff(path):
        return _decode(path)
    planes = read_planes(path)
    if planes.shape[0] != 1:
        raise UserError(f"'{Path(path).name}' is a stack of {planes.shape[0]} planes, not a single image")
    return _plane(planes[0])


def mask_palette(path: Path) -> list[tuple[int, int, int]] | None:
    """The colour table of a palette (indexed) PNG or GIF, index by index; None for any other image."""
    try:
        with Image.open(Path(path)) as img:
            if img.mode != "P":
                return None
            table = img.getpalette() or []
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return [tuple(table[i : i + 3]) for i in range(0, len(table) - 2, 3)]


def _palette_indices(path: Path) -> np.ndarray | None:
    """A palette image's own indices (HxW uint8), or None when it is not one."""
    if mask_palette(path) is None:
        return None
    check_pixels(path)
    try:
        with Image.open(Path(path)) as img:
            return np.array(img, np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"'{Path(path).name}' is damaged and cannot be read ({exc})") from None


def read_mask_raw(path: Path) -> np.ndarray:
    """A mask's raw values before class decoding: HxW uint8/uint16, or HxWx3 uint8 RGB when the colours differ.

    A palette PNG gives its indices, which are the user's class numbers (a VOC-style mask's 1 stays 1 whatever
    its colour); `mask_palette` gives the colours. A colour mask whose three channels are equal is returned as HxW,
    so gray masks saved as RGB decode as values, not colours.
    """
    planes = read_mask_planes(path)
    if planes.shape[0] != 1:
        raise UserError(f"mask '{Path(path).name}' is a stack of {planes.shape[0]} planes, not a single mask")
    return planes[0]


def read_mask_planes(path: Path) -> np.ndarray:
    """`read_mask_raw` for every plane: [P, H, W] values, or [P, H, W, 3] colours (a TIFF mask may be a stack)."""
    if is_tiff(path):
        planes = tiff.read_stack(Path(path))
    else:
        indices = _palette_indices(Path(path))
        if indices is not None:
            _check_file(Path(path))
            return indices[None]
        image = _decode(path)
        planes = (image[:, :, None] if image.ndim == 2 else image)[None]
    if planes.shape[3] not in (1, 3):
        raise UserError(f"mask '{Path(path).name}' has {planes.shape[3]} channels; a mask has one (or RGB colours)")
    if planes.dtype.kind == "f":
        whole = np.array_equal(planes, np.round(planes)) and planes.min() >= 0 and planes.max() <= 65535
        if not whole:
            raise UserError(f"mask '{Path(path).name}' holds fractions; a mask holds whole numbers (class or "
                            "object ids)")
        planes = planes.astype(np.uint16 if planes.max() > 255 else np.uint8)
    if planes.shape[3] == 1:
        return planes[..., 0]
    if planes.dtype != np.uint8:
        planes = (planes >> 8).astype(np.uint8)
    first = planes[..., 0]
    if np.array_equal(first, planes[..., 1]) and np.array_equal(first, planes[..., 2]):
        return first
    return planes


def is_lossy(path: Path) -> bool:
    """True for JPEG files, whose compression noise must not be taken for classes."""
    return Path(path).suffix.lower() in LOSSY_EXTENSIONS


def encode_png(array: np.ndarray, palette: list[tuple[int, int, int]] | None = None, name: str = "image") -> bytes:
    """HxW or HxWx3 (RGB) uint8/uint16 as PNG bytes.

    With `palette` (colours by value), an HxW uint8 array becomes a palette PNG: the file holds the values
    themselves and every viewer shows them in those colours (a 0/1 mask is no longer a black square).
    """
    if palette is not None and array.ndim == 2 and array.dtype == np.uint8:
        picture = Image.fromarray(array, "P")
        flat = [channel for colour in palette[:256] for channel in colour]
        picture.putpalette(flat + [0] * (768 - len(flat)))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()
    pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise UserError(f"could not encode '{name}' as PNG")
    return encoded.tobytes()


def write_png(path: Path, array: np.ndarray, palette: list[tuple[int, int, int]] | None = None) -> None:
    """Write `encode_png`'s PNG to `path`; the only writer of dataset and mask files."""
    path = Path(path)
    path.write_bytes(encode_png(array, palette, path.name))


def write_stored(path: Path, array: np.ndarray) -> None:
    """A dataset file: PNG by `write_png` for a '.png' path; a zlib-compressed TIFF (lossless for any dtype and
    channel count, and opened by Fiji and napari) for a '.tif' path."""
    path = Path(path)
    if path.suffix != ".tif":
        write_png(path, array)
        return
    import tifffile  # the field's TIFF library (through scikit-image's dependencies)

    colour = array.ndim == 3 and array.shape[2] == 3
    tifffile.imwrite(path, array, compression="zlib", photometric="rgb" if colour else "minisblack",
                     planarconfig="contig" if array.ndim == 3 else None)


def write_stack(path: Path, planes: np.ndarray) -> None:
    """[P, H, W] masks (or [P, H, W, C] images) as one multi-page TIFF, the form Fiji and napari read as a stack."""
    import tifffile

    tifffile.imwrite(Path(path), planes, compression="zlib", photometric="minisblack",
                     metadata={"axes": "ZYX" if planes.ndim == 3 else "ZYXC"})


def bits_of(array: np.ndarray) -> int:
    """The smallest bit depth (8 or more) that holds the brightest pixel: 12 for a 12-bit camera's image."""
    top = int(array.max()) if array.size else 0
    return max(8, top.bit_length())


def to_uint8(array: np.ndarray, bits: int | None = None) -> np.ndarray:
    """8-bit pixels for storage and for the network.

    Integer images are divided by the range of `bits` (a 12-bit image by 4095): a dataset passes the one depth
    found over all its images, and a run's predictions use the depth its dataset recorded, so one intensity means
    one thing across images. Without `bits`, the image's own depth is used. Never a per-image stretch, which would
    make a dim image as bright as a bright one.
    Float images are clipped to 0..1 when they fit there, otherwise stretched from their min to their max.
    """
    if array.dtype == np.uint8:  # 8-bit images are kept as they are, whatever depth the rest of a dataset has
        return array
    if array.dtype in (np.uint8, np.uint16, np.uint32, np.int32, np.int16):
        depth = bits or bits_of(array)
        scaled = array.astype(np.float64) * (255.0 / (2**depth - 1))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    values = np.nan_to_num(array.astype(np.float64))
    low, high = (0.0, 1.0) if values.min() >= 0 and values.max() <= 1 else (values.min(), values.max())
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def channels_of(image: np.ndarray) -> int:
    """The channel count; an RGB image whose three channels are all equal counts as grayscale (1)."""
    if image.ndim == 2:
        return 1
    if image.shape[2] != 3:
        return int(image.shape[2])
    same = np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2])
    return 1 if same else 3


def convertible(have: int, want: int) -> bool:
    """Whether an image of `have` channels can become `want`: equal, or grayscale and RGB (photos) either way."""
    return have == want or {have, want} == {1, 3}


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """The image with `channels` channels: HxW for 1, HxWxC otherwise.

    Only grayscale and RGB convert into each other (luminance, or the gray repeated); any other mismatch is a
    UserError, because a 2-channel stain has no meaning as RGB.
    """
    have = 1 if image.ndim == 2 else int(image.shape[2])
    if have == channels:
        return image[:, :, 0] if image.ndim == 3 and channels == 1 else image
    if not convertible(channels_of(image), channels):
        raise UserError(f"the image has {have} channels but {channels} are expected")
    if channels == 1:
        return image if image.ndim == 2 else image[:, :, 0] if image.shape[2] == 1 else _gray(image)
    gray = image if image.ndim == 2 else image[:, :, 0]
    return np.repeat(gray[:, :, None], 3, axis=2)


def _gray(image: np.ndarray) -> np.ndarray:
    """Luminance of an RGB image, in its own dtype (OpenCV's weights, which handle uint8, uint16 and float32)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


# Additive colours of channels 1, 2, ... when there are not exactly 1 or 3 (fluorescence convention: green,
# magenta, cyan, yellow, then red, blue).
CHANNEL_COLOURS = ((0, 255, 0), (255, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (0, 0, 255))


def display_rgb(unit: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] picture of an image already on the 0..1 scale ([H, W] or [H, W, C], any C).

    One channel is gray, three are RGB, and any other count is a composite: each channel in its own colour
    (`CHANNEL_COLOURS`), added and clipped, the way microscopy viewers show stains.
    """
    values = np.clip(np.asarray(unit, np.float32), 0.0, 1.0)
    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    if channels == 1:
        rgb = np.repeat(values, 3, axis=2)
    elif channels == 3:
        rgb = values
    else:
        colours = np.array([CHANNEL_COLOURS[c % len(CHANNEL_COLOURS)] for c in range(channels)], np.float32) / 255
        rgb = np.clip(values @ colours, 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)
