"""Header-first image checks: exact sizes from real encodings, bombs refused before OpenCV, hostile bytes."""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from crossview.io.image import (
    OPENCV_MAX_PIXELS,
    OPENCV_MAX_SIDE,
    SUPPORTED_FORMATS,
    ImageError,
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedImage,
    decode_image,
    probe_image,
)
from crossview.sim.bombs import png_bomb as black_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
RIFF_WEBP = b"RIFF" + bytes(4) + b"WEBP"
VP8_KEY_FRAME = b"\x50\x02\x00"
VP8_START = b"\x9d\x01\x2a"
DEFAULT_PIXEL_LIMIT = "8,847,360 px (max_pixels)"


@dataclass(frozen=True, slots=True)
class Encoding:
    """How OpenCV writes one variant of a supported format; ``chunk`` is WebP's first chunk type."""

    extension: str
    params: tuple[int, ...]
    channels: int
    format: ImageFormat
    chunk: bytes | None = None


ENCODINGS = {
    "png": Encoding(".png", (), 3, "png"),
    "jpeg": Encoding(".jpg", (cv2.IMWRITE_JPEG_QUALITY, 90), 3, "jpeg"),
    "webp_lossy": Encoding(".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), 3, "webp", b"VP8 "),
    # Quality above 100 selects lossless; OpenCV also writes lossless when no quality is given.
    "webp_lossless": Encoding(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), 3, "webp", b"VP8L"),
    # Lossy with an alpha channel needs the extended layout: VP8X, then ALPH, then VP8.
    "webp_extended": Encoding(".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), 4, "webp", b"VP8X"),
    "bmp": Encoding(".bmp", (), 3, "bmp"),
}
SIZES = [(1, 1), (641, 479), (479, 641), (17, 3), (3, 17), (64, 64)]  # (width, height)


def picture(width: int, height: int, channels: int = 3) -> NDArray[np.uint8]:
    """A deterministic image with structure in every channel."""
    rows = np.arange(height, dtype=np.int64)[:, None]
    columns = np.arange(width, dtype=np.int64)[None, :]
    planes = [(rows * 7 + columns * 3) % 256, (rows * columns) % 256, (rows * 2 - columns * 5) % 256]
    planes.append(np.full((height, width), 200))
    return np.stack(planes[:channels], axis=-1).astype(np.uint8)


def encode(name: str, width: int, height: int) -> bytes:
    encoding = ENCODINGS[name]
    image = picture(width, height, encoding.channels)
    ok, encoded = cv2.imencode(encoding.extension, image, list(encoding.params))
    assert ok
    return encoded.tobytes()


def opencv_decode(data: bytes) -> NDArray[np.uint8] | None:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if decoded is None else np.asarray(decoded)


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    checksum = struct.pack(">I", zlib.crc32(chunk_type + payload))
    return struct.pack(">I", len(payload)) + chunk_type + payload + checksum


def png_ihdr(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def with_png_size(data: bytes, width: int, height: int, fix_checksum: bool = True) -> bytes:
    edited = bytearray(data)
    struct.pack_into(">II", edited, 16, width, height)
    if fix_checksum:
        struct.pack_into(">I", edited, 29, zlib.crc32(edited[12:29]))
    return bytes(edited)


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_frame(width: int, height: int, marker: int = 0xC0) -> bytes:
    """A one-component SOF segment: precision, height, width, components, (id, sampling, table)."""
    return jpeg_segment(marker, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")


def exif_segment(orientation: int | None = None, trailer: bytes = b"") -> bytes:
    """APP1 with a big-endian TIFF header, IFD0 holding at most the orientation tag, then ``trailer``."""
    entries = [] if orientation is None else [struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)]
    ifd = struct.pack(">H", len(entries)) + b"".join(entries) + struct.pack(">I", 0)
    return jpeg_segment(0xE1, b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + ifd + trailer)


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """OpenCV writes a baseline frame header with three components (length 17)."""
    offset = data.index(b"\xff\xc0\x00\x11")
    edited = bytearray(data)
    struct.pack_into(">HH", edited, offset + 5, height, width)
    return bytes(edited)


def riff_webp(chunk_type: bytes, payload: bytes) -> bytes:
    chunk = chunk_type + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def vp8x_payload(width: int, height: int, size: int = 10) -> bytes:
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return (b"\x00" * 4 + canvas).ljust(size, b"\x00")


def vp8_payload(width: int, height: int, frame_tag: bytes = VP8_KEY_FRAME, start: bytes = VP8_START) -> bytes:
    """A key frame's tag (bit 0 clear), the start code, then the 14-bit sizes."""
    return frame_tag + start + struct.pack("<HH", width, height)


def vp8l_payload(width: int, height: int, signature: int = 0x2F, version: int = 0) -> bytes:
    return bytes([signature]) + struct.pack("<I", (width - 1) | (height - 1) << 14 | version << 29)


def bmp_header(width: int, height: int, header_size: int = 40) -> bytes:
    dib = struct.pack("<Iii", header_size, width, height).ljust(header_size, b"\x00")
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, 14 + len(dib)) + dib


def os2_bitmap(image: NDArray[np.uint8]) -> bytes:
    """A 24-bit bitmap with the 12-byte OS/2 core header: 16-bit width and height, rows bottom-up."""
    height, width = image.shape[:2]
    padding = bytes(-(width * 3) % 4)
    pixels = b"".join(row.tobytes() + padding for row in image[::-1])
    header = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + header + pixels


def with_vp8x_size(data: bytes, width: int, height: int) -> bytes:
    edited = bytearray(data)
    assert edited[12:16] == b"VP8X"
    edited[24:30] = vp8x_payload(width, height)[4:]
    return bytes(edited)


def with_bmp_size(data: bytes, width: int, height: int) -> bytes:
    edited = bytearray(data)
    struct.pack_into("<ii", edited, 18, width, height)
    return bytes(edited)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call to cv2.imdecode fail the test: the refusal must come from the header alone."""

    def refuse(*args: object) -> None:
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.fixture(scope="module")
def small_images() -> dict[str, bytes]:
    return {name: encode(name, 23, 17) for name in ENCODINGS}


# --- probe_image on real encodings -------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("name", ENCODINGS)
def test_probe_reads_the_exact_size_of_real_encodings(name: str, size: tuple[int, int]) -> None:
    width, height = size
    data = encode(name, width, height)
    encoding = ENCODINGS[name]
    if encoding.chunk is not None:
        assert data[12:16] == encoding.chunk
    assert probe_image(data) == ImageInfo(encoding.format, width, height)


@pytest.mark.parametrize("name", ENCODINGS)
def test_probe_accepts_memoryviews(name: str) -> None:
    data = encode(name, 641, 479)
    expected = probe_image(data)
    assert probe_image(memoryview(data)) == expected
    assert probe_image(np.frombuffer(data, np.uint8).data) == expected


@pytest.mark.parametrize("size", [(1, 1), (3000, 2000), (641, 479), (1 << 24, 1 << 24)])
def test_probe_reads_a_handmade_vp8x_canvas(size: tuple[int, int]) -> None:
    width, height = size
    assert probe_image(riff_webp(b"VP8X", vp8x_payload(width, height))) == ImageInfo("webp", width, height)


def test_probe_reads_handmade_lossy_and_lossless_webp_headers() -> None:
    assert probe_image(riff_webp(b"VP8 ", vp8_payload(641, 479))) == ImageInfo("webp", 641, 479)
    # The top two bits of each 16-bit field are upscaling hints, not size.
    hinted = riff_webp(b"VP8 ", vp8_payload(0xC000 | 641, 0x4000 | 479))
    assert probe_image(hinted) == ImageInfo("webp", 641, 479)
    assert probe_image(riff_webp(b"VP8L", vp8l_payload(16384, 1))) == ImageInfo("webp", 16384, 1)


def test_os2_core_bitmap_is_probed_and_decoded() -> None:
    image = picture(7, 5)
    data = os2_bitmap(image)
    assert probe_image(data) == ImageInfo("bmp", 7, 5)
    np.testing.assert_array_equal(decode_image(data, ImageLimits()), image)


def test_top_down_bitmap_has_the_absolute_height() -> None:
    data = with_bmp_size(encode("bmp", 7, 5), 7, -5)
    assert probe_image(data) == ImageInfo("bmp", 7, 5)
    decoded = decode_image(data, ImageLimits())
    assert decoded.shape == (5, 7, 3)
    np.testing.assert_array_equal(decoded, opencv_decode(data))


# --- JPEG segment walking ----------------------------------------------------------------------


FRAME_MARKERS = [0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF]


@pytest.mark.parametrize("marker", FRAME_MARKERS)
def test_jpeg_size_comes_from_every_frame_marker(marker: int) -> None:
    data = SOI + jpeg_segment(0xE0, b"JFIF\x00" + bytes(9)) + jpeg_frame(641, 479, marker)
    assert probe_image(data) == ImageInfo("jpeg", 641, 479)


@pytest.mark.parametrize("marker", [0xC4, 0xC8, 0xCC, 0xDB, 0xDD, 0xE0, 0xEF, 0xFE])
def test_jpeg_segments_are_skipped_by_length_whatever_they_hold(marker: int) -> None:
    decoy = jpeg_frame(60000, 60000)
    data = SOI + jpeg_segment(marker, decoy + decoy) + jpeg_frame(641, 479)
    assert probe_image(data) == ImageInfo("jpeg", 641, 479)


def test_jpeg_fill_bytes_and_standalone_markers_are_skipped() -> None:
    data = SOI + b"\xff\xff\xff" + b"\xff\x01" + b"\xff\xd0\xff\xd7" + b"\xff\xff" + jpeg_frame(641, 479)
    assert probe_image(data) == ImageInfo("jpeg", 641, 479)


def test_jpeg_markers_before_the_frame_are_capped() -> None:
    comment = jpeg_segment(0xFE, b"")
    assert probe_image(SOI + comment * 4095 + jpeg_frame(8, 8)) == ImageInfo("jpeg", 8, 8)
    with pytest.raises(UndecodableImage, match="over 4096 markers"):
        probe_image(SOI + comment * 1_000_000 + jpeg_frame(8, 8))


def test_jpeg_exif_thumbnail_with_a_huge_frame_is_skipped() -> None:
    real = encode("jpeg", 641, 479)
    thumbnail = SOI + jpeg_frame(60000, 60000) + EOI
    data = real[:2] + exif_segment(trailer=thumbnail) + real[2:]
    assert data.index(b"\xff\xc0") < data.index(b"\xff\xc0\x00\x11"), "the decoy frame header comes first"
    assert probe_image(data) == ImageInfo("jpeg", 641, 479)
    np.testing.assert_array_equal(decode_image(data, ImageLimits()), opencv_decode(data))


def test_jpeg_exif_orientation_may_transpose_the_decoded_size() -> None:
    real = encode("jpeg", 641, 479)
    data = real[:2] + exif_segment(orientation=6) + real[2:]  # 6: rotate 90 degrees clockwise to display
    assert probe_image(data) == ImageInfo("jpeg", 641, 479)
    decoded = decode_image(data, ImageLimits())
    assert decoded.shape == (641, 479, 3)
    np.testing.assert_array_equal(decoded, opencv_decode(data))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (SOI + jpeg_segment(0xDA, bytes(6)) + jpeg_frame(8, 8), "SOS before its frame header"),
        (SOI + EOI + jpeg_frame(8, 8), "EOI before its frame header"),
        (SOI + SOI + jpeg_frame(8, 8), "second SOI"),
        (SOI + b"\xff\x00" + jpeg_frame(8, 8), "stuffed 0xFF00"),
        (SOI + b"\xff\xe0\x00\x01" + jpeg_frame(8, 8), "has length 1 (below 2)"),
        (SOI + b"\xff\xe0\x00\x00" + jpeg_frame(8, 8), "has length 0 (below 2)"),
        (SOI + b"\xff\xe0\x00\x40" + bytes(10), "runs past the end"),
        (SOI + jpeg_frame(8, 8)[:-1], "runs past the end"),
        (SOI + jpeg_segment(0xC0, b"\x08\x00"), "frame header (SOF) has length 4"),
        (SOI + jpeg_frame(640, 0), "DNL-defined heights are not supported"),
        (SOI + jpeg_frame(0, 480), "empty image (0 x 480 px)"),
        (SOI + b"\x12\x34" + jpeg_frame(8, 8), "0x12 at byte 2 where a marker must be"),
        (SOI + jpeg_segment(0xE0, bytes(4)) + b"\x00" + jpeg_frame(8, 8), "where a marker must be"),
        (SOI, "JPEG is truncated"),
        (SOI + b"\xff\xff\xff", "JPEG is truncated"),
        (SOI + b"\xff\xe0\x00", "JPEG header is truncated"),
    ],
)
def test_jpeg_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=re.escape(message)):
        probe_image(data)


# --- PNG, WebP and BMP header errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (PNG_SIGNATURE + png_chunk(b"tEXt", b"a\x00b") + png_ihdr(8, 8), "13-byte IHDR chunk, found b'tEXt'"),
        (PNG_SIGNATURE + png_chunk(b"IHDR", bytes(12)) + png_chunk(b"IEND", b""), "13-byte IHDR"),
        (PNG_SIGNATURE + png_ihdr(0, 8), "empty image"),
        (PNG_SIGNATURE + png_ihdr(8, 0), "empty image"),
        (PNG_SIGNATURE + png_ihdr(1 << 31, 8), "2^31-1"),
        (with_png_size(PNG_SIGNATURE + png_ihdr(8, 8), 9, 8, fix_checksum=False), "checksum"),
        (PNG_SIGNATURE + png_ihdr(8, 8)[:-1], "PNG header is truncated"),
    ],
)
def test_png_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=re.escape(message)):
        probe_image(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (riff_webp(b"ALPH", bytes(12)), "VP8, VP8L or VP8X chunk, found b'ALPH'"),
        (riff_webp(b"VP8 ", vp8_payload(8, 8, frame_tag=b"\x51\x02\x00")), "key frame"),
        (riff_webp(b"VP8 ", vp8_payload(8, 8, start=b"\x9d\x01\x2b")), "start code"),
        (riff_webp(b"VP8 ", vp8_payload(0, 8)), "empty image"),
        (riff_webp(b"VP8 ", vp8_payload(0xC000, 8)), "empty image"),
        (riff_webp(b"VP8L", vp8l_payload(8, 8, signature=0x2E)), "signature 0x2E"),
        (riff_webp(b"VP8L", vp8l_payload(8, 8, version=1)), "version 1"),
        (riff_webp(b"VP8X", vp8x_payload(8, 8, size=12)), "12 bytes, not 10"),
        (riff_webp(b"VP8X", vp8x_payload(8, 8))[:29], "WebP header is truncated"),
        (b"RIFF\x04\x00\x00\x00WEBP", "WebP header is truncated"),
    ],
)
def test_webp_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=re.escape(message)):
        probe_image(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"BM" + bytes(12) + struct.pack("<I", 8) + bytes(24), "header size 8 is too small"),
        (b"BM" + bytes(12) + struct.pack("<I", 13) + bytes(24), "header size 13 is too small"),
        (bmp_header(0, 8), "width 0"),
        (bmp_header(-8, 8), "width -8"),
        (bmp_header(8, 0), "empty image"),
        (bmp_header(8, 8, header_size=12)[:18] + struct.pack("<HH", 0, 8), "empty image"),
        (bmp_header(8, 8)[:25], "BMP header is truncated"),
        (b"BM" + bytes(10), "BMP header is truncated"),
    ],
)
def test_bmp_header_errors(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=re.escape(message)):
        probe_image(data)


# --- formats that are refused ------------------------------------------------------------------


def opencv_encoded(extension: str) -> bytes:
    image = picture(7, 5)
    ok, encoded = cv2.imencode(extension, image.astype(np.float32) if extension == ".hdr" else image)
    assert ok
    return encoded.tobytes()


UNSUPPORTED = {
    "gif": b"GIF89a" + struct.pack("<HH", 20000, 20000) + bytes(8),
    "tiff_little_endian": b"II*\x00\x08\x00\x00\x00" + bytes(16),
    "tiff_big_endian": b"MM\x00*\x00\x00\x00\x08" + bytes(16),
    "ppm": b"P6\n20000 20000\n255\n",
    "pfm": b"PF\n20000 20000\n-1\n",
    "radiance_hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n",
    "openexr": b"\x76\x2f\x31\x01" + bytes(16),
    "jpeg2000": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(16),
    "jpeg2000_codestream": b"\xff\x4f\xff\x51" + bytes(16),
    "jpeg_xl": b"\xff\x0a" + bytes(16),
    "avif": b"\x00\x00\x00\x20ftypavif" + bytes(16),
    "sun_raster": b"\x59\xa6\x6a\x95" + bytes(16),
    "riff_wave": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(16),
    "os2_bitmap_array": b"BA" + bytes(30),
    "text": b"hello, world",
    "opencv_tiff": opencv_encoded(".tiff"),
    "opencv_ppm": opencv_encoded(".ppm"),
    "opencv_hdr": opencv_encoded(".hdr"),
}


@pytest.mark.parametrize("name", UNSUPPORTED)
@pytest.mark.usefixtures("no_decoding")
def test_other_formats_are_refused_before_opencv(name: str) -> None:
    data = UNSUPPORTED[name]
    with pytest.raises(UnsupportedImage, match="supported formats: jpeg, png, webp, bmp") as caught:
        probe_image(data)
    assert caught.value.code == "unsupported_image"
    with pytest.raises(UnsupportedImage):
        decode_image(data, ImageLimits())


def test_empty_bytes_are_undecodable() -> None:
    with pytest.raises(UndecodableImage, match="empty"):
        probe_image(b"")


@pytest.mark.parametrize(
    ("data", "image_format"),
    [(PNG_SIGNATURE[:5], "png"), (b"\xff", "jpeg"), (b"RIFF\x10\x00", "webp"), (RIFF_WEBP[:10], "webp")],
)
def test_a_cut_off_signature_is_a_truncated_image(data: bytes, image_format: str) -> None:
    with pytest.raises(UndecodableImage, match=f"inside the {image_format} signature"):
        probe_image(data)


# --- bombs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    return black_png(20000, 20000)


def test_the_png_bomb_is_small_and_well_formed(png_bomb: bytes) -> None:
    assert len(png_bomb) < 64 * 1024, "tens of KB declaring 1.2 GB of BGR pixels"
    (length,) = struct.unpack_from(">I", png_bomb, 33)
    assert png_bomb[37:41] == b"IDAT"
    decompressor = zlib.decompressobj()
    pending, inflated = png_bomb[41 : 41 + length], 0
    while pending:
        inflated += len(decompressor.decompress(pending, 1 << 22))
        pending = decompressor.unconsumed_tail
    assert decompressor.eof
    assert inflated == 20000 * (1 + 20000 // 8)
    # The same generator at a small size makes an image OpenCV decodes.
    small = opencv_decode(black_png(37, 5))
    assert small is not None
    assert small.shape == (5, 37, 3)
    assert not small.any()


def test_png_bomb_is_refused_before_opencv(png_bomb: bytes, no_decoding: None) -> None:
    assert probe_image(png_bomb) == ImageInfo("png", 20000, 20000)
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(png_bomb, ImageLimits())
    assert str(caught.value) == (
        "image is 20000 x 20000 px (400,000,000 px); the limit is 8,847,360 px (max_pixels)"
    )
    assert caught.value.code == "image_too_large"


BOMBS: dict[str, Callable[[], bytes]] = {
    "jpeg_frame_60000": lambda: with_jpeg_size(encode("jpeg", 64, 48), 60000, 60000),
    "jpeg_progressive_frame_60000": lambda: SOI + jpeg_frame(60000, 60000, 0xC2),
    "bmp_100000": lambda: with_bmp_size(encode("bmp", 8, 8), 100000, 100000),
    "bmp_top_down_min_int": lambda: with_bmp_size(encode("bmp", 8, 8), 100000, -(1 << 31)),
    "bmp_core_65535": lambda: bmp_header(8, 8, header_size=12)[:18] + struct.pack("<HH", 65535, 65535),
    "webp_vp8x_2^24": lambda: riff_webp(b"VP8X", vp8x_payload(1 << 24, 1 << 24)),
    "webp_vp8l_16384": lambda: riff_webp(b"VP8L", vp8l_payload(16384, 16384)),
    "webp_vp8_16383": lambda: riff_webp(b"VP8 ", vp8_payload(16383, 16383)),
    "png_40000_header": lambda: with_png_size(encode("png", 8, 8), 40000, 40000),
    "png_2^31-1_header": lambda: with_png_size(encode("png", 8, 8), (1 << 31) - 1, (1 << 31) - 1),
}


@pytest.mark.parametrize("name", BOMBS)
@pytest.mark.usefixtures("no_decoding")
def test_bombs_are_refused_by_their_header(name: str) -> None:
    with pytest.raises(ImageTooLarge, match=re.escape(DEFAULT_PIXEL_LIMIT)):
        decode_image(BOMBS[name](), ImageLimits())


@pytest.mark.usefixtures("no_decoding")
def test_over_opencv_pixel_ceiling_is_image_too_large_not_cv2_error() -> None:
    data = with_png_size(encode("png", 8, 8), 40000, 40000)  # 1.6e9 px > 2^30: cv2.imdecode would raise
    widest = ImageLimits(max_width=OPENCV_MAX_SIDE, max_height=OPENCV_MAX_SIDE, max_pixels=OPENCV_MAX_PIXELS)
    with pytest.raises(ImageTooLarge, match="the limit is 1,073,741,824 px \\(max_pixels\\)"):
        decode_image(data, widest)


# --- hostile and damaged bytes -----------------------------------------------------------------


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_prefix_is_an_image_error_or_the_full_header(name: str, small_images: dict[str, bytes]) -> None:
    data = small_images[name]
    expected = probe_image(data)
    complete = 0
    for length in range(len(data)):
        prefix = data[:length]
        try:
            info = probe_image(prefix)
        except UndecodableImage:
            continue
        assert info == expected
        complete += 1
        try:
            decoded = decode_image(prefix, ImageLimits())
        except UndecodableImage:
            continue
        assert decoded.shape == (expected.height, expected.width, 3)
    assert complete > 0, "the header ends before the data does"


@given(st.binary(max_size=512))
def test_random_bytes_give_an_image_error_or_an_info(data: bytes) -> None:
    try:
        info = probe_image(data)
    except ImageError:
        return
    assert info.format in SUPPORTED_FORMATS
    assert info.width >= 1
    assert info.height >= 1


SIGNATURES = [PNG_SIGNATURE, PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR", SOI, SOI + b"\xff"]
SIGNATURES += [RIFF_WEBP, RIFF_WEBP + b"VP8 ", RIFF_WEBP + b"VP8L", RIFF_WEBP + b"VP8X"]
SIGNATURES += [b"BM", b"BM" + bytes(12) + b"\x0c\x00\x00\x00", b"BM" + bytes(12) + b"\x28\x00\x00\x00"]


@given(st.sampled_from(SIGNATURES), st.binary(max_size=512))
def test_random_bytes_after_a_signature_give_an_image_error_or_an_info(signature: bytes, tail: bytes) -> None:
    try:
        info = probe_image(signature + tail)
    except ImageError:
        return
    assert info.width >= 1
    assert info.height >= 1


@settings(deadline=None)
@given(st.sampled_from(sorted(ENCODINGS)), st.integers(0, 47), st.integers(0, 255))
def test_a_damaged_header_gives_an_image_error_or_a_consistent_image(
    small_images: dict[str, bytes], name: str, position: int, value: int
) -> None:
    damaged = bytearray(small_images[name])
    damaged[position] = value
    limits = ImageLimits(max_pixels=1 << 16)
    try:
        info = probe_image(bytes(damaged))
        decoded = decode_image(bytes(damaged), limits)
    except ImageError:
        return
    assert decoded.shape[:2] in ((info.height, info.width), (info.width, info.height))


@pytest.mark.parametrize(
    "edit",
    [
        lambda: with_png_size(encode("png", 23, 17), 46, 34),
        lambda: with_png_size(encode("png", 23, 17), 11, 8),
        lambda: with_vp8x_size(encode("webp_extended", 23, 17), 46, 34),
        lambda: with_bmp_size(encode("bmp", 23, 17), 23, 34),
        lambda: with_bmp_size(encode("bmp", 23, 17), 46, 17),
    ],
    ids=["png_larger", "png_smaller", "webp_canvas_larger", "bmp_taller", "bmp_wider"],
)
def test_a_header_edited_to_another_size_is_undecodable(edit: Callable[[], bytes]) -> None:
    with pytest.raises(UndecodableImage):
        decode_image(edit(), ImageLimits())


@pytest.mark.parametrize(
    "edit",
    [
        lambda: with_jpeg_size(encode("jpeg", 23, 17), 11, 8),
        lambda: with_jpeg_size(encode("jpeg", 23, 17), 46, 34),
        lambda: with_bmp_size(encode("bmp", 23, 17), 23, 8),
    ],
    ids=["jpeg_smaller", "jpeg_larger", "bmp_shorter"],
)
def test_formats_that_trust_their_header_decode_to_the_header_size(edit: Callable[[], bytes]) -> None:
    # libjpeg and OpenCV's BMP reader take the edited size as the truth, so no mismatch is left to see.
    data = edit()
    info = probe_image(data)
    try:
        decoded = decode_image(data, ImageLimits())
    except UndecodableImage:
        return
    assert decoded.shape == (info.height, info.width, 3)


def fake_decoder(result: object) -> Callable[[object, int], object]:
    def decode(buffer: object, flags: int) -> object:
        assert flags == cv2.IMREAD_COLOR
        return result

    return decode


@pytest.mark.parametrize(
    ("decoded", "message"),
    [
        (np.zeros((10, 10, 3), np.uint8), "decoded to 10 x 10 px but its header declares 641 x 479 px"),
        (np.zeros((479, 640, 3), np.uint8), "decoded to 640 x 479 px"),
        (None, "could not be decoded"),
        (np.zeros((0, 0, 3), np.uint8), "could not be decoded"),
        (np.zeros((479, 641), np.uint8), "not HxWx3 uint8"),
        (np.zeros((479, 641, 3), np.uint16), "not HxWx3 uint8"),
    ],
)
def test_a_decode_unlike_the_header_is_undecodable(
    monkeypatch: pytest.MonkeyPatch, decoded: object, message: str
) -> None:
    monkeypatch.setattr(cv2, "imdecode", fake_decoder(decoded))
    with pytest.raises(UndecodableImage, match=message):
        decode_image(encode("png", 641, 479), ImageLimits())


def test_a_transposed_decode_is_accepted_and_made_contiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    strided = picture(479 * 2, 641)[:, ::2]  # 641 high, 479 wide, not contiguous
    monkeypatch.setattr(cv2, "imdecode", fake_decoder(strided))
    decoded = decode_image(encode("png", 641, 479), ImageLimits())
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, strided)


def test_an_opencv_error_becomes_undecodable(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(buffer: object, flags: int) -> None:
        raise cv2.error("OpenCV(5.1.0) loadsave.cpp:80: error: (-215:Assertion failed)")

    monkeypatch.setattr(cv2, "imdecode", fail)
    with pytest.raises(UndecodableImage, match=r"^png image could not be decoded$") as caught:
        decode_image(encode("png", 8, 8), ImageLimits())
    assert isinstance(caught.value.__cause__, cv2.error)


# --- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("name", ENCODINGS)
def test_decode_matches_opencv(name: str, size: tuple[int, int]) -> None:
    width, height = size
    data = encode(name, width, height)
    decoded = decode_image(data, ImageLimits())
    assert decoded.shape == (height, width, 3)
    assert decoded.dtype == np.uint8
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, opencv_decode(data))


def test_decode_accepts_a_memoryview() -> None:
    data = encode("png", 17, 3)
    np.testing.assert_array_equal(decode_image(memoryview(data), ImageLimits()), picture(17, 3))


# --- limits, info, errors ----------------------------------------------------------------------


def test_default_limits_allow_a_dci_4k_frame_in_any_orientation() -> None:
    limits = ImageLimits()
    assert (limits.max_width, limits.max_height, limits.max_pixels) == (8192, 8192, 4096 * 2160)
    for width, height in [(4096, 2160), (2160, 4096), (3840, 2160), (8192, 1080), (1, 8192)]:
        limits.check(ImageInfo("jpeg", width, height))


@pytest.mark.parametrize(
    ("limits", "info", "message"),
    [
        (
            ImageLimits(),
            ImageInfo("png", 4097, 2160),
            "image is 4097 x 2160 px (8,849,520 px); the limit is 8,847,360 px (max_pixels)",
        ),
        (
            ImageLimits(max_width=1920),
            ImageInfo("jpeg", 1921, 1),
            "image is 1921 x 1 px (1,921 px); the limit is 1,920 px wide (max_width)",
        ),
        (
            ImageLimits(max_height=1080),
            ImageInfo("webp", 1, 1081),
            "image is 1 x 1081 px (1,081 px); the limit is 1,080 px high (max_height)",
        ),
    ],
)
def test_check_names_the_size_and_the_limit(limits: ImageLimits, info: ImageInfo, message: str) -> None:
    with pytest.raises(ImageTooLarge) as caught:
        limits.check(info)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "fields",
    [
        {"max_width": 0},
        {"max_height": -1},
        {"max_pixels": 0},
        {"max_width": OPENCV_MAX_SIDE + 1},
        {"max_pixels": OPENCV_MAX_PIXELS + 1},
        {"max_bytes": 10},
    ],
)
def test_limits_are_validated(fields: dict[str, int]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ImageLimits(**fields)


def test_limits_and_info_are_immutable() -> None:
    with pytest.raises(pydantic.ValidationError):
        ImageLimits().max_pixels = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ImageInfo("png", 1, 1).width = 2  # type: ignore[misc]


def test_info_pixels() -> None:
    assert ImageInfo("bmp", 641, 479).pixels == 307_039


def test_error_codes() -> None:
    assert issubclass(ImageError, ValueError)
    assert {error.code for error in (UnsupportedImage, ImageTooLarge, UndecodableImage)} == {
        "unsupported_image",
        "image_too_large",
        "bad_image",
    }
    assert all(issubclass(error, ImageError) for error in (UnsupportedImage, ImageTooLarge, UndecodableImage))
