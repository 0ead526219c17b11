"""A fixed camera: identity, image geometry and (optionally) its calibration."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Matrix3 = Annotated[list[list[float]], Field(min_length=3, max_length=3)]
Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]


def _check_matrix(name: str, value: Any, shape: tuple[int, ...]) -> Any:
    if value is None:
        return value
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has non-finite values")
    return array.tolist()


class Camera(BaseModel):
    """One camera of a site.

    Calibration is optional and comes in one of two forms: a pinhole model (``intrinsics``
    3x3, ``rotation`` 3x3 and ``translation`` 3, world-to-camera) or a ``homography`` 3x3
    mapping image pixels to ground-plane metres. Geometry that uses it lives in
    ``crossview.multicam``; this type only holds and validates it.

    >>> Camera(id="gate", width=1920, height=1080, fps=25).has_ground_calibration
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float | None = Field(default=None, gt=0)
    intrinsics: Matrix3 | None = None
    distortion: list[float] | None = None
    rotation: Matrix3 | None = None
    translation: Vector3 | None = None
    homography: Matrix3 | None = None

    @field_validator("intrinsics", "rotation", "homography", mode="before")
    @classmethod
    def _square(cls, value: Any, info: Any) -> Any:
        return _check_matrix(info.field_name, value, (3, 3))

    @field_validator("translation", mode="before")
    @classmethod
    def _vector(cls, value: Any) -> Any:
        return _check_matrix("translation", value, (3,))

    @model_validator(mode="after")
    def _consistent(self) -> Camera:
        pinhole = (self.intrinsics, self.rotation, self.translation)
        given = sum(part is not None for part in pinhole)
        if given not in (0, 3):
            raise ValueError("a pinhole calibration needs intrinsics, rotation and translation together")
        if self.rotation is not None:
            rotation = np.asarray(self.rotation)
            if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(rotation) <= 0:
                raise ValueError("rotation must be a proper rotation matrix (orthonormal, det +1)")
        if self.homography is not None and abs(np.linalg.det(np.asarray(self.homography))) < 1e-12:
            raise ValueError("homography is singular (determinant ~ 0): the calibration is degenerate")
        return self

    @property
    def has_ground_calibration(self) -> bool:
        return self.homography is not None or self.intrinsics is not None

    def homography_array(self) -> NDArray[np.float64] | None:
        """The image-to-ground homography as an array, if calibrated that way."""
        return None if self.homography is None else np.asarray(self.homography, dtype=np.float64)
