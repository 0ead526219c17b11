from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from crossview import Camera, Frame


def test_frame_checks_image_layout() -> None:
    frame = Frame(np.zeros((480, 640, 3), np.uint8), camera_id="c1", index=0, timestamp=0.04)
    assert frame.size == (640, 480) and frame.height == 480
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Frame(np.zeros((480, 640), np.uint8), camera_id="c1", index=0, timestamp=0.0)
    with pytest.raises(ValueError, match="uint8"):
        Frame(np.zeros((4, 4, 3), np.float32), camera_id="c1", index=0, timestamp=0.0)
    with pytest.raises(ValueError, match="index"):
        Frame(np.zeros((4, 4, 3), np.uint8), camera_id="c1", index=-1, timestamp=0.0)


def test_camera_validates_calibration() -> None:
    camera = Camera(id="gate", width=1920, height=1080, fps=25, homography=np.diag([0.01, 0.01, 1.0]))
    assert camera.has_ground_calibration
    assert camera.homography_array() is not None
    with pytest.raises(ValidationError, match="singular"):
        Camera(id="gate", width=10, height=10, homography=np.zeros((3, 3)))
    with pytest.raises(ValidationError, match="together"):
        Camera(id="gate", width=10, height=10, intrinsics=np.eye(3))
    with pytest.raises(ValidationError, match="rotation"):
        Camera(
            id="gate",
            width=10,
            height=10,
            intrinsics=np.eye(3),
            rotation=np.eye(3) * 2,
            translation=[0, 0, 1],
        )
    with pytest.raises(ValidationError, match=r"shape \(3, 3\)"):
        Camera(id="gate", width=10, height=10, homography=np.eye(2))
