"""Synthetic decompression bombs: tiny, well-formed images that decode to huge ones, for testing
and benchmarking header-first size checks (``crossview.io.image``).

>>> bomb = png_bomb(20000, 20000)
>>> len(bomb) < 64 * 1024  # 1.2 GB of BGR pixels once decoded
True
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["png_bomb"]


def png_bomb(width: int, height: int) -> bytes:
    """A well-formed 1-bit greyscale PNG of ``width`` x ``height`` black pixels, kilobytes long.

    Rows of zeros compress about 1000:1, yet OpenCV decodes the image to ``3 * width * height``
    bytes of BGR. The rows are compressed one at a time, so the pixels are never held.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed bits
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
