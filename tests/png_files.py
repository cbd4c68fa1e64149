"""PNG files made byte by byte for the tests: a header that lies about its size, a decompression bomb."""

from __future__ import annotations

import struct
import zlib


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny file whose header claims a giant 8-bit grayscale picture."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def decompression_bomb_png(side: int) -> bytes:
    """A valid, all-black PNG of side x side pixels that compresses to well under a megabyte."""
    packer, rows, block = zlib.compressobj(1), b"\0" * (side + 1), 100
    parts = [packer.compress(rows * block) for _ in range(side // block)]
    parts += [packer.compress(rows * (side % block)), packer.flush()]
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks
