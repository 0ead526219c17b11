"""A constant-velocity Kalman filter for boxes, vectorised over tracks.

State ``[cx, cy, w, h, vx, vy, vw, vh]`` (centre, size and their velocities per frame). Process
and measurement noise scale with the box size, so one set of weights serves near and far objects
(BoT-SORT's parameterisation, which keeps width and height rather than SORT's area and aspect).

With this model every noise matrix is diagonal and each coordinate moves only with its own
velocity, so the 8-dimensional filter is exactly four independent 2-state filters. The
covariance is therefore stored as ``(T, 4, 3)``: for each coordinate, the variance of the
position, its covariance with the velocity and the variance of the velocity. Prediction and
update are then a handful of element-wise operations, with no matrix products or inverses,
and give the same numbers as the full-matrix filter. ``full_covariance`` expands to ``(T, 8, 8)``.
Every method handles ``T = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

_SIZE = np.array([2, 3, 2, 3])  # the state entry (w or h) each coordinate's noise scales with
POSITION, CROSS, VELOCITY = 0, 1, 2


def xyxy_to_cxcywh(xyxy: Array) -> Array:
    out = np.empty_like(xyxy, dtype=np.float64)
    out[:, :2] = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    out[:, 2:] = xyxy[:, 2:] - xyxy[:, :2]
    return out


def cxcywh_to_xyxy(boxes: Array) -> Array:
    out = np.empty((len(boxes), 4))
    half = boxes[:, 2:4] / 2
    out[:, :2] = boxes[:, :2] - half
    out[:, 2:] = boxes[:, :2] + half
    return out


@dataclass(frozen=True, slots=True)
class BoxKalmanFilter:
    """Noise weights relative to box size: position per frame and velocity per frame."""

    position_weight: float = 1.0 / 20
    velocity_weight: float = 1.0 / 160

    def initiate(self, xyxy: Array) -> tuple[Array, Array]:
        """States for new boxes: zero velocity, wide velocity uncertainty."""
        measurement = xyxy_to_cxcywh(np.asarray(xyxy, dtype=np.float64))
        mean = np.zeros((len(measurement), 8))
        mean[:, :4] = measurement
        size = measurement[:, _SIZE]
        covariance = np.zeros((len(measurement), 4, 3))
        covariance[:, :, POSITION] = (2 * self.position_weight * size) ** 2
        covariance[:, :, VELOCITY] = (10 * self.velocity_weight * size) ** 2
        return mean, covariance

    def predict(self, mean: Array, covariance: Array, steps: int = 1) -> tuple[Array, Array]:
        """Advance ``steps`` frames (new arrays; the inputs are not modified)."""
        mean, covariance = mean.copy(), covariance.copy()
        self.predict_in_place(mean, covariance, steps)
        return mean, covariance

    def predict_in_place(self, mean: Array, covariance: Array, steps: int = 1) -> None:
        """``predict`` writing into the given arrays (which may be views of a larger store)."""
        position_noise, velocity_noise = self.position_weight**2, self.velocity_weight**2
        pp, pv, vv = covariance[:, :, POSITION], covariance[:, :, CROSS], covariance[:, :, VELOCITY]
        for _ in range(steps):
            size_squared = mean[:, _SIZE] ** 2
            mean[:, :4] += mean[:, 4:]
            pp += 2 * pv + vv + position_noise * size_squared
            pv += vv
            vv += velocity_noise * size_squared

    def update(self, mean: Array, covariance: Array, xyxy: Array) -> tuple[Array, Array]:
        """Correct with observed boxes, one per track (row-aligned); new arrays."""
        mean, covariance = mean.copy(), covariance.copy()
        self.update_in_place(mean, covariance, xyxy)
        return mean, covariance

    def update_in_place(self, mean: Array, covariance: Array, xyxy: Array) -> None:
        """``update`` writing into the given arrays (which may be views of a larger store)."""
        pp, pv, vv = covariance[:, :, POSITION], covariance[:, :, CROSS], covariance[:, :, VELOCITY]
        innovation_variance = pp + (self.position_weight * mean[:, _SIZE]) ** 2
        gain_position = pp / innovation_variance
        gain_velocity = pv / innovation_variance
        innovation = xyxy_to_cxcywh(np.asarray(xyxy, dtype=np.float64))
        innovation -= mean[:, :4]
        mean[:, :4] += gain_position * innovation
        mean[:, 4:] += gain_velocity * innovation
        vv -= gain_velocity * pv
        keep = 1 - gain_position
        pv *= keep
        pp *= keep

    def replay(
        self, mean: Array, covariance: Array, start: Array, end: Array, gaps: NDArray[np.int64]
    ) -> None:
        """Re-run each state along a straight path of virtual boxes, in place.

        Row ``i`` is predicted and updated with ``start[i] + (end[i] - start[i]) * k / gaps[i]`` for
        ``k = 1 .. gaps[i] - 1``, then predicted once more: OC-SORT's re-update of a track found
        again after ``gaps[i] - 1`` missed frames. Plain float arithmetic per coordinate: a
        re-found track is usually alone and its gap short, where numpy's per-call cost dominates.
        """
        position_noise, velocity_noise = self.position_weight**2, self.velocity_weight**2
        start_boxes, end_boxes = xyxy_to_cxcywh(start).tolist(), xyxy_to_cxcywh(end).tolist()
        for row, gap in enumerate(gaps.tolist()):
            state = mean[row].tolist()
            cov = covariance[row].tolist()
            first, last = start_boxes[row], end_boxes[row]
            for step in range(1, gap + 1):
                sizes = (state[2], state[3], state[2], state[3])
                for axis in range(4):  # predict
                    size_squared = sizes[axis] * sizes[axis]
                    pp, pv, vv = cov[axis]
                    state[axis] += state[axis + 4]
                    cov[axis] = [
                        pp + 2 * pv + vv + position_noise * size_squared,
                        pv + vv,
                        vv + velocity_noise * size_squared,
                    ]
                if step == gap:
                    break
                sizes = (state[2], state[3], state[2], state[3])
                for axis in range(4):  # update with the virtual observation
                    pp, pv, vv = cov[axis]
                    observed = first[axis] + (last[axis] - first[axis]) * step / gap
                    innovation_variance = pp + (self.position_weight * sizes[axis]) ** 2
                    gain_position, gain_velocity = pp / innovation_variance, pv / innovation_variance
                    innovation = observed - state[axis]
                    state[axis] += gain_position * innovation
                    state[axis + 4] += gain_velocity * innovation
                    cov[axis] = [(1 - gain_position) * pp, (1 - gain_position) * pv, vv - gain_velocity * pv]
            mean[row] = state
            covariance[row] = cov

    def boxes(self, mean: Array) -> Array:
        """``xyxy`` boxes of the states (sizes clipped at a pixel to stay valid)."""
        state = mean[:, :4].copy()
        np.maximum(state[:, 2:4], 1.0, out=state[:, 2:4])
        return cxcywh_to_xyxy(state)

    def box_std(self, covariance: Array) -> Array:
        """Standard deviations of ``cx, cy, w, h``: the uncertainty of each state's box."""
        result: Array = np.sqrt(np.maximum(covariance[:, :, POSITION], 0.0))
        return result

    @staticmethod
    def full_covariance(covariance: Array) -> Array:
        """The ``(T, 8, 8)`` covariance of the state ``[cx, cy, w, h, vx, vy, vw, vh]``."""
        full = np.zeros((len(covariance), 8, 8))
        index = np.arange(4)
        full[:, index, index] = covariance[:, :, POSITION]
        full[:, index, index + 4] = covariance[:, :, CROSS]
        full[:, index + 4, index] = covariance[:, :, CROSS]
        full[:, index + 4, index + 4] = covariance[:, :, VELOCITY]
        return full
