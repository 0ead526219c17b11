"""Header-first image decoding: refuse decompression bombs before they are decoded.

A decompression bomb is a tiny file that declares a huge canvas: a 48 KB PNG can declare
20000 x 20000 px, which decodes to 1.2 GB of BGR pixels, and ``cv2.imdecode`` raises ``cv2.error``
outright above 2^30 px. The size an image will occupy once decoded is written in its header, so
``probe_image`` reads the format and the width and height from the first bytes (no decoding, no
allocation proportional to pixels, work proportional to the header only), ``ImageLimits.check``
refuses what is over the limits with a message naming the limit, and only then does
``decode_image`` hand the bytes to OpenCV.

Only JPEG, PNG, WebP and BMP are accepted: they are what cameras and clients send. OpenCV has
many more decoders (TIFF, GIF, PNM, HDR, EXR, JPEG 2000, AVIF, ...), each with its own header
layout; every one that ``probe_image`` did not parse would be a path to ``cv2.imdecode`` with an
unchecked size, so anything else is refused as ``UnsupportedImage`` before OpenCV sees it.

>>> import cv2
>>> ok, encoded = cv2.imencode(".png", np.zeros((479, 641, 3), np.uint8))
>>> probe_image(encoded.tobytes())
ImageInfo(format='png', width=641, height=479)
>>> decode_image(encoded.tobytes(), ImageLimits()).shape
(479, 641, 3)
>>> ImageLimits(max_pixels=100_000).check(probe_image(encoded.tobytes()))
Traceback (most recent call last):
...
crossview.io.image.ImageTooLarge: image is 641 x 479 px (307,039 px); the limit is 100,000 px (max_pixels)
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

ImageFormat = Literal["jpeg", "png", "webp", "bmp"]

SUPPORTED_FORMATS: Final[tuple[ImageFormat, ...]] = ("jpeg", "png", "webp", "bmp")

# OpenCV's own ceilings (CV_IO_MAX_IMAGE_WIDTH, CV_IO_MAX_IMAGE_HEIGHT, CV_IO_MAX_IMAGE_PIXELS in
# imgcodecs/src/loadsave.cpp): above them cv2.imdecode raises cv2.error instead of decoding.
OPENCV_MAX_SIDE: Final = 1 << 20
OPENCV_MAX_PIXELS: Final = 1 << 30

# Each format's signature as (offset, bytes) parts; all must match. WebP is a RIFF container whose
# form type at offset 8 is "WEBP" (RIFF also holds WAV and AVI).
_SIGNATURES: Final[tuple[tuple[ImageFormat, tuple[tuple[int, bytes], ...]], ...]] = (
    ("png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ("jpeg", ((0, b"\xff\xd8"),)),
    ("webp", ((0, b"RIFF"), (8, b"WEBP"))),
    ("bmp", ((0, b"BM"),)),
)

_PNG_MAX_SIDE: Final = (1 << 31) - 1
# One or more 0xFF (fill bytes may pad any marker), then the marker code.
_JPEG_MARKER: Final = re.compile(rb"\xff+([^\xff])")
# RST0-RST7 and TEM stand alone: no length field follows them.
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers; C4 (DHT), C8 (JPG) and CC (DAC) in the same range are not frames.
_JPEG_FRAME: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Real files have a handful of segments before the frame header, a few hundred with a large ICC profile
# or XMP packet split across APPn segments; the cap keeps a file of millions of empty segments from
# costing seconds of Python.
_JPEG_MAX_MARKERS_BEFORE_FRAME: Final = 4096
_JPEG_BEFORE_FRAME: Final = {0x00: "a stuffed 0xFF00", 0xD8: "a second SOI", 0xD9: "EOI", 0xDA: "SOS"}
_BMP_CORE_HEADER: Final = 12  # OS/2 BITMAPCOREHEADER: 16-bit unsigned width and height
_BMP_SIZE_FIELDS_END: Final = 16  # a longer DIB header must at least hold the 32-bit width and height


class ImageError(ValueError):
    """Encoded image bytes that will not be decoded; ``code`` names the reason for an API error body."""

    code: ClassVar[str]


class UnsupportedImage(ImageError):
    """The bytes are not JPEG, PNG, WebP or BMP."""

    code = "unsupported_image"


class ImageTooLarge(ImageError):
    """The header declares a size over an ``ImageLimits`` limit."""

    code = "image_too_large"


class UndecodableImage(ImageError):
    """A truncated or corrupt header, a zero size, a failed decode, or a decode of another size."""

    code = "bad_image"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An encoded image's format and size as its header declares them, in pixels."""

    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height: what a decode allocates, times 3 bytes for BGR."""
        return self.width * self.height


class ImageLimits(BaseModel):
    """The largest image a caller will decode.

    The default pixel budget is one DCI 4K frame (4096 x 2160 = 8,847,360 px, 26.5 MB as BGR): the
    largest frame the cameras in this field deliver, so UHD (3840 x 2160) and anything smaller pass
    whatever its shape. ``max_width`` and ``max_height`` are wider than 4096 and 2160 so that a
    panorama or a portrait frame within the pixel budget passes too. They apply to the size as
    stored, before an EXIF orientation is applied. No limit may exceed OpenCV's own ceilings
    (2^20 px a side, 2^30 px in all), above which it raises ``cv2.error`` instead of decoding.

    >>> ImageLimits().check(ImageInfo("jpeg", 3840, 2160))
    >>> try:
    ...     ImageLimits(max_width=1920).check(ImageInfo("jpeg", 3840, 1080))
    ... except ImageTooLarge as error:
    ...     print(error)
    image is 3840 x 1080 px (4,147,200 px); the limit is 1,920 px wide (max_width)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_width: int = Field(default=8192, ge=1, le=OPENCV_MAX_SIDE)
    max_height: int = Field(default=8192, ge=1, le=OPENCV_MAX_SIDE)
    max_pixels: int = Field(default=4096 * 2160, ge=1, le=OPENCV_MAX_PIXELS)

    def check(self, info: ImageInfo) -> None:
        """Raise ``ImageTooLarge`` naming the image's size and the first limit it breaks.

        The pixel count is checked first: it is what the decode allocates.
        """
        checks = (
            (info.pixels, self.max_pixels, "px", "max_pixels"),
            (info.width, self.max_width, "px wide", "max_width"),
            (info.height, self.max_height, "px high", "max_height"),
        )
        for actual, limit, unit, name in checks:
            if actual > limit:
                raise ImageTooLarge(
                    f"image is {info.width} x {info.height} px ({info.pixels:,} px); "
                    f"the limit is {limit:,} {unit} ({name})"
                )


def probe_image(data: bytes | memoryview) -> ImageInfo:
    """The format and size of an encoded image, read from its header without decoding it.

    The format is recognised by its signature at offset 0; the work done is proportional to the
    header (for JPEG, the segments before the frame header), never to the pixels.

    >>> probe_image(b"BM" + bytes(12) + (40).to_bytes(4, "little") + (640).to_bytes(4, "little")
    ...             + (-480).to_bytes(4, "little", signed=True))
    ImageInfo(format='bmp', width=640, height=480)
    """
    view = memoryview(data).cast("B")
    image_format = _sniff(view)
    match image_format:
        case "png":
            width, height = _png_size(view)
        case "jpeg":
            width, height = _jpeg_size(view)
        case "webp":
            width, height = _webp_size(view)
        case "bmp":
            width, height = _bmp_size(view)
    if width < 1 or height < 1:
        raise UndecodableImage(f"{image_format} header declares an empty image ({width} x {height} px)")
    return ImageInfo(image_format, width, height)


def decode_image(data: bytes | memoryview, limits: ImageLimits) -> NDArray[np.uint8]:
    """A C-contiguous HxWx3 uint8 BGR image, decoded only once its header is within ``limits``.

    Raises ``UnsupportedImage``, ``ImageTooLarge`` (before any decoding) or ``UndecodableImage``
    (corrupt data, or a decode whose size is not the header's; a transposed size is accepted,
    since OpenCV applies the EXIF orientation).
    """
    info = probe_image(data)
    limits.check(info)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:
        # OpenCV's message names its source files; the chained exception keeps it for the logs.
        raise UndecodableImage(f"{info.format} image could not be decoded") from error
    if image is None or image.size == 0:
        raise UndecodableImage(f"{info.format} image could not be decoded")
    decoded = np.asarray(image)
    if decoded.ndim != 3 or decoded.shape[2] != 3 or decoded.dtype != np.uint8:
        raise UndecodableImage(
            f"{info.format} image decoded to {decoded.dtype} {decoded.shape}, not HxWx3 uint8"
        )
    height, width = decoded.shape[:2]
    if (height, width) not in ((info.height, info.width), (info.width, info.height)):
        raise UndecodableImage(
            f"{info.format} image decoded to {width} x {height} px but its header declares "
            f"{info.width} x {info.height} px"
        )
    return np.ascontiguousarray(decoded, np.uint8)


def _sniff(view: memoryview) -> ImageFormat:
    """The format whose signature ``view`` starts with; a cut-off signature is a truncated image."""
    if len(view) == 0:
        raise UndecodableImage("image is empty (0 bytes)")
    for image_format, parts in _SIGNATURES:
        present = [bytes(view[offset : offset + len(magic)]) for offset, magic in parts]
        if all(found == magic for found, (_, magic) in zip(present, parts, strict=True)):
            return image_format
        if all(magic.startswith(found) for found, (_, magic) in zip(present, parts, strict=True)):
            raise UndecodableImage(f"image is {len(view)} bytes, cut off inside the {image_format} signature")
    raise UnsupportedImage(
        f"unsupported image format (data starts with {bytes(view[:8]).hex(' ')}); "
        f"supported formats: {', '.join(SUPPORTED_FORMATS)}"
    )


def _unpack(layout: str, view: memoryview, offset: int, image_format: str) -> tuple[Any, ...]:
    """``struct.unpack_from``, raising ``UndecodableImage`` when the header is cut off."""
    return struct.unpack_from(layout, _require(view, offset + struct.calcsize(layout), image_format), offset)


def _png_size(view: memoryview) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which must come first, checksum included."""
    length, chunk_type = struct.unpack_from(">I4s", _require(view, 33, "PNG"), 8)
    if chunk_type != b"IHDR" or length != 13:
        raise UndecodableImage(
            f"PNG must start with a 13-byte IHDR chunk, found {chunk_type!r} of {length} bytes"
        )
    width, height, checksum = struct.unpack_from(">II5xI", view, 16)
    if zlib.crc32(view[12:29]) != checksum:
        raise UndecodableImage("PNG IHDR checksum does not match its content")
    if width > _PNG_MAX_SIDE or height > _PNG_MAX_SIDE:
        raise UndecodableImage(f"PNG size {width} x {height} px is over the format's 2^31-1 px a side")
    return width, height


def _jpeg_size(view: memoryview) -> tuple[int, int]:
    """Width and height from the first SOF segment, walking the segments before it by their lengths.

    Skipping by length is what keeps an EXIF thumbnail (a whole JPEG inside APP1) from being read
    as the image's frame header. Stray bytes between segments, which libjpeg skips with a warning,
    are refused here: a file is either walked exactly as the decoder will walk it or not at all.
    """
    position = 2
    for _ in range(_JPEG_MAX_MARKERS_BEFORE_FRAME):
        match = _JPEG_MARKER.match(view, position)
        if match is None:
            if position >= len(view) or view[position] == 0xFF:
                raise UndecodableImage(
                    f"JPEG is truncated: {len(view)} bytes end before its frame header (SOF)"
                )
            found = view[position]
            raise UndecodableImage(f"JPEG has 0x{found:02X} at byte {position} where a marker must be")
        marker = view[match.end() - 1]
        position = match.end()
        if marker in _JPEG_STANDALONE:
            continue
        if marker in _JPEG_BEFORE_FRAME:
            raise UndecodableImage(f"JPEG has {_JPEG_BEFORE_FRAME[marker]} before its frame header (SOF)")
        (length,) = _unpack(">H", view, position, "JPEG")
        end = position + length
        if length < 2:
            raise UndecodableImage(f"JPEG segment 0xFF{marker:02X} has length {length} (below 2)")
        if end > len(view):
            raise UndecodableImage(
                f"JPEG segment 0xFF{marker:02X} at byte {position - 2} runs past the end of the data "
                f"({end} > {len(view)} bytes)"
            )
        if marker in _JPEG_FRAME:
            if length < 8:
                raise UndecodableImage(f"JPEG frame header (SOF) has length {length} < 8")
            height, width = struct.unpack_from(">HH", view, position + 3)
            if height == 0:
                raise UndecodableImage(
                    "JPEG declares height 0, to be defined by a DNL marker after the first scan; "
                    "DNL-defined heights are not supported"
                )
            return width, height
        position = end
    limit = _JPEG_MAX_MARKERS_BEFORE_FRAME
    raise UndecodableImage(f"JPEG has over {limit} markers before its frame header (SOF)")


def _webp_size(view: memoryview) -> tuple[int, int]:
    """Canvas width and height from the first chunk: lossy VP8, lossless VP8L or extended VP8X."""
    chunk_type, chunk_size = _unpack("<4sI", view, 12, "WebP")
    payload = 20
    if chunk_type == b"VP8 ":
        frame_tag, start_code, width, height = _unpack("<B2x3sHH", view, payload, "WebP")
        # Bit 0 of the frame tag is 0 for a key frame; only key frames carry the size.
        if frame_tag & 1:
            raise UndecodableImage("WebP lossy bitstream does not start with a key frame")
        if start_code != b"\x9d\x01\x2a":
            raise UndecodableImage("WebP lossy bitstream lacks the VP8 start code 9D 01 2A")
        # The top two bits of each are upscaling hints, not part of the size.
        return width & 0x3FFF, height & 0x3FFF
    if chunk_type == b"VP8L":
        signature, bits = _unpack("<BI", view, payload, "WebP")
        if signature != 0x2F:
            raise UndecodableImage(f"WebP lossless bitstream has signature 0x{signature:02X}, not 0x2F")
        if bits >> 29:
            raise UndecodableImage(f"WebP lossless bitstream has version {bits >> 29}, not 0")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk_type == b"VP8X":
        if chunk_size != 10:
            raise UndecodableImage(f"WebP VP8X chunk is {chunk_size} bytes, not 10")
        _require(view, payload + 10, "WebP")
        width = int.from_bytes(view[payload + 4 : payload + 7], "little") + 1
        height = int.from_bytes(view[payload + 7 : payload + 10], "little") + 1
        return width, height
    raise UndecodableImage(f"WebP must start with a VP8, VP8L or VP8X chunk, found {chunk_type!r}")


def _bmp_size(view: memoryview) -> tuple[int, int]:
    """Width and height from the DIB header; a negative height is a top-down bitmap."""
    (header_size,) = _unpack("<I", view, 14, "BMP")
    if header_size == _BMP_CORE_HEADER:
        width, height = _unpack("<HH", view, 18, "BMP")
        return width, height
    if header_size < _BMP_SIZE_FIELDS_END:
        raise UndecodableImage(f"BMP DIB header size {header_size} is too small to hold a width and height")
    width, height = _unpack("<ii", view, 18, "BMP")
    if width <= 0:
        raise UndecodableImage(f"BMP declares width {width}")
    return width, abs(height)


def _require(view: memoryview, end: int, image_format: str) -> memoryview:
    """``view`` itself, once it is known to hold ``end`` bytes."""
    if end > len(view):
        raise UndecodableImage(f"{image_format} header is truncated: {len(view)} bytes, it needs {end}")
    return view
