"""The decoupled box filter equals the textbook 8-state Kalman filter it stands for."""

from __future__ import annotations

import numpy as np

from crossview.track.kalman import BoxKalmanFilter, cxcywh_to_xyxy


def full_step(mean: np.ndarray, cov: np.ndarray, box: np.ndarray, kf: BoxKalmanFilter) -> tuple:
    """One predict + update with explicit 8x8 matrices (noise scaled by the box size)."""
    transition = np.eye(8) + np.eye(8, k=4)
    size = mean[[2, 3, 2, 3]]
    process = np.diag(np.r_[(kf.position_weight * size) ** 2, (kf.velocity_weight * size) ** 2])
    mean = transition @ mean
    cov = transition @ cov @ transition.T + process
    observe = np.eye(4, 8)
    size = mean[[2, 3, 2, 3]]
    innovation_cov = observe @ cov @ observe.T + np.diag((kf.position_weight * size) ** 2)
    gain = cov @ observe.T @ np.linalg.inv(innovation_cov)
    measured = np.r_[(box[:2] + box[2:]) / 2, box[2:] - box[:2]]
    mean = mean + gain @ (measured - observe @ mean)
    cov = (np.eye(8) - gain @ observe) @ cov
    return mean, cov


def test_decoupled_filter_equals_the_full_matrix_filter() -> None:
    kf = BoxKalmanFilter()
    rng = np.random.default_rng(0)
    start = np.array([[100.0, 50.0, 140.0, 150.0], [300.0, 80.0, 330.0, 160.0]])
    mean, cov = kf.initiate(start)
    full = [(mean[i].copy(), kf.full_covariance(cov)[i].copy()) for i in range(2)]
    for step in range(1, 15):
        boxes = start + step * np.array([3.0, 1.0, 3.0, 1.0]) + rng.normal(0, 1.5, (2, 4))
        mean, cov = kf.update(*kf.predict(mean, cov), boxes)
        full = [full_step(m, c, boxes[i], kf) for i, (m, c) in enumerate(full)]
    np.testing.assert_allclose(mean, np.stack([m for m, _ in full]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kf.full_covariance(cov), np.stack([c for _, c in full]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(kf.boxes(mean), cxcywh_to_xyxy(mean[:, :4]), atol=1e-9)
