"""The UCLA CAMPUS multi-view data sets (auditorium, garden, parking lot): cameras and ground truth.

A scene folder holds one VATIC annotation file per view (``view-HC3.txt``, ...; read by
``crossview.io.formats.vatic``), the calibration of some views in ``cam_param.mat`` (MATLAB), and
synchronised 1920x1080 videos at 30 fps. A track id names one object in every view, so the
annotations are multi-camera ground truth as they are.

The calibration gives, per calibrated view, ``K`` (3x3; its principal point kept apart in
``center``), ``R`` (world to camera) and ``T``, which is the camera's *position* in the world, not
the usual translation: the README's recipe maps a pixel ``(x, y)`` to the ground by solving
``[KR[:, :2] | (center - (x, y); -1)] p = K R T``, i.e. ``x_c = R (X - T)``. Pixels are first
multiplied by ``scale``. The world is metric, the ground the plane ``z = 0`` with ``z`` up, as
crossview's own convention. Views not in the file (IP2 and IP5 of the auditorium) are uncalibrated.

>>> cameras = load_ucla_cameras("data/ucla-campus-auditorium")  # doctest: +SKIP
>>> sorted(cameras), cameras["HC3"].has_ground_calibration  # doctest: +SKIP
(['HC3', 'HC4'], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crossview.core.camera import Camera
from crossview.io.formats._errors import FormatError
from crossview.io.formats.mtmc import MtmcTable
from crossview.io.formats.vatic import VIEW_PREFIX, read_vatic_views

UCLA_WIDTH = 1920
UCLA_HEIGHT = 1080
UCLA_FPS = 30.0
CALIBRATION_FILE = "cam_param.mat"


def load_ucla_cameras(
    root: str | Path, *, all_views: bool = False, fps: float = UCLA_FPS
) -> dict[str, Camera]:
    """The scene's cameras by view name (``view-HC3`` is ``HC3``), calibrated from ``cam_param.mat``.

    With ``all_views`` the views that have an annotation file but no calibration are included as
    uncalibrated ``Camera``s (size and frame rate only). Raises ``FileNotFoundError`` when the
    calibration file is missing and ``FormatError`` when an entry lacks a field or is malformed.
    """
    from scipy.io import loadmat  # imported here: only this reader needs MATLAB files

    folder = Path(root)
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no UCLA calibration file {path}")
    try:
        entries = loadmat(str(path))["cam_param"][0]
    except (KeyError, IndexError, ValueError) as error:
        raise FormatError(path, f"expected a 'cam_param' struct array ({error})") from error
    cameras: dict[str, Camera] = {}
    for entry in entries:
        camera = _camera(path, entry, fps)
        cameras[camera.id] = camera
    if all_views:
        for view in sorted(folder.glob(f"{VIEW_PREFIX}*.txt")):
            name = view.stem.removeprefix(VIEW_PREFIX)
            cameras.setdefault(name, Camera(id=name, width=UCLA_WIDTH, height=UCLA_HEIGHT, fps=fps))
    return dict(sorted(cameras.items()))


def _camera(path: Path, entry: Any, fps: float) -> Camera:
    try:
        name = str(entry["name"][0]).removeprefix(VIEW_PREFIX)
        rotation = np.asarray(entry["R"], dtype=np.float64)
        position = np.asarray(entry["T"], dtype=np.float64).reshape(3)
        intrinsics = np.asarray(entry["K"], dtype=np.float64).copy()
        centre = np.asarray(entry["center"], dtype=np.float64).reshape(2)
        scale = float(np.asarray(entry["scale"], dtype=np.float64).reshape(-1)[0])
    except (KeyError, IndexError, ValueError) as error:
        raise FormatError(path, f"a camera entry lacks a field or is malformed ({error})") from error
    if rotation.shape != (3, 3) or intrinsics.shape != (3, 3) or not scale > 0:
        raise FormatError(path, f"camera {name!r}: K and R must be 3x3 and scale positive")
    intrinsics[:2, 2] = centre  # the principal point is kept apart in this file
    intrinsics[:2] /= scale  # the file's pixels are the image's times ``scale``
    try:
        return Camera(
            id=name,
            width=UCLA_WIDTH,
            height=UCLA_HEIGHT,
            fps=fps,
            intrinsics=intrinsics.tolist(),
            rotation=rotation.tolist(),
            translation=(-rotation @ position).tolist(),
        )
    except ValueError as error:
        raise FormatError(path, f"camera {name!r}: {error}") from error


def load_ucla_ground_truth(
    root: str | Path, *, keep_lost: bool = False, labels: Sequence[str] | None = None
) -> MtmcTable:
    """Every view's annotations as one multi-camera table (global id = track id, frames from 1).

    ``lost`` rows (the object out of view or hidden; a stale box) are dropped unless ``keep_lost``;
    ``labels`` keeps only those labels (``PERSON`` in the auditorium). See ``read_vatic_views``.
    """
    return read_vatic_views(root, keep_lost=keep_lost, labels=labels)
