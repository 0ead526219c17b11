"""Frames from a folder of numbered images, such as a MOTChallenge sequence's ``img1/``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from crossview.core.frame import Frame
from crossview.io.formats import FormatError
from crossview.io.formats.mot import read_seqinfo
from crossview.io.sources.base import SourceError, _SourceBase
from crossview.io.sources.video import check_selection, selected

_log = logging.getLogger(__name__)

#: The image types read when no ``seqinfo.ini`` names one.
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: MOTChallenge's frame rate when ``seqinfo.ini`` gives none, used for folders without one too.
DEFAULT_FPS: Final = 30.0


class ImageFolderSource(_SourceBase):
    """The images of a folder, in order, as frames.

    ``folder`` is one of: a MOTChallenge sequence root (with ``seqinfo.ini``, whose ``imDir``,
    ``imExt``, ``frameRate`` and ``name`` are used), a folder holding ``img1/``, or the image
    folder itself. Images are sorted by number when every name is a number (``000001.jpg``,
    ``2.png``) and by name otherwise. ``index`` is the image's number minus the first number
    (so MOTChallenge's ``000001.jpg`` is index 0 and a missing file leaves a gap), or its
    position when names are not numbers; ``timestamp`` is ``index / fps``.
    An image that cannot be read is skipped and counted in ``stats.corrupt_frames``.

    >>> source = ImageFolderSource("MOT17-09")  # doctest: +SKIP
    >>> source.camera_id, source.fps, source.frame_count  # doctest: +SKIP
    ('MOT17-09', 30.0, 525)
    """

    def __init__(
        self,
        folder: str | Path,
        camera_id: str | None = None,
        *,
        fps: float | None = None,
        stride: int = 1,
        start: int = 0,
        max_frames: int | None = None,
    ) -> None:
        folder = Path(folder)
        if fps is not None and not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        check_selection(stride, start, max_frames)
        image_dir, suffixes, name, declared_fps = _layout(folder)
        super().__init__(camera_id if camera_id is not None else name, str(image_dir))
        self._files = _image_files(image_dir, suffixes)
        self._indices = _indices(self._files)
        self._fps = float(fps if fps is not None else declared_fps or DEFAULT_FPS)
        self._stride = stride
        self._start = start
        self._max_frames = max_frames

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int:
        """The number of image files found (before any selection)."""
        return len(self._files)

    @property
    def files(self) -> Sequence[Path]:
        """The image files in frame order."""
        return tuple(self._files)

    def _frames(self) -> Iterator[Frame]:
        delivered = 0
        if self._max_frames == 0:
            return
        for path, index in zip(self._files, self._indices, strict=True):
            if self._stop.is_set():
                return
            if not selected(index, self._stride, self._start):
                continue
            raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if raw is None or raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint8:
                self._stats.corrupt_frames += 1
                self._stats.last_error = f"{path}: cannot be read as an image"
                _log.debug("skipped unreadable image %s", path)
                continue
            image: NDArray[np.uint8] = np.asarray(raw, dtype=np.uint8)
            yield Frame(image, camera_id=self._camera_id, index=index, timestamp=index / self._fps)
            self._stats.frames_read += 1
            delivered += 1
            if self._max_frames is not None and delivered >= self._max_frames:
                return

    def _release(self) -> None:
        """Nothing stays open between images."""


def _layout(folder: Path) -> tuple[Path, frozenset[str], str, float | None]:
    """``(image folder, suffixes, sequence name, declared fps)`` for a sequence root or image folder."""
    if not folder.is_dir():
        raise SourceError(folder, "no such folder" if not folder.exists() else "not a folder")
    seqinfo = folder / "seqinfo.ini"
    if seqinfo.is_file():
        try:
            info = read_seqinfo(seqinfo)
        except FormatError as error:
            raise SourceError(error.path, error.reason) from error
        return folder / info.image_dir, frozenset({info.image_ext.lower()}), info.name, info.frame_rate
    if (folder / "img1").is_dir():
        return folder / "img1", IMAGE_SUFFIXES, folder.name, None
    return folder, IMAGE_SUFFIXES, folder.name, None


def _image_files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    if not folder.is_dir():
        raise SourceError(folder, "no such image folder")
    files = [path for path in folder.iterdir() if path.suffix.lower() in suffixes and path.is_file()]
    if not files:
        raise SourceError(folder, f"no image files ({', '.join(sorted(suffixes))})")
    if all(_numbered(path) for path in files):
        return sorted(files, key=lambda path: (int(path.stem), path.name))
    return sorted(files, key=lambda path: path.name)


def _indices(files: list[Path]) -> list[int]:
    if all(_numbered(path) for path in files):
        numbers = [int(path.stem) for path in files]
        return [number - numbers[0] for number in numbers]
    return list(range(len(files)))


def _numbered(path: Path) -> bool:
    return path.stem.isascii() and path.stem.isdigit()
