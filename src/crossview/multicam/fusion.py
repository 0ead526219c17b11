"""Detection-level fusion of overlapping calibrated views: one identity per object, on the ground.

Where cameras watch the same ground (a square, a room, a platform), the views themselves say who
is who: at one instant one person is at one place, and every camera that sees her puts her there.
``GroundFusion`` uses that directly, once per instant (every camera's frame of that instant):

1. **Locate.** Each detection is placed on the ground in metres with a 2x2 covariance saying how
   far to trust it (*Uncertainty* below). A row that cannot be located (uncalibrated camera, foot
   above the horizon) takes no further part and gets ``-1``.
2. **Group across views, seeded by the tracks.** Each camera's rows are matched to the tracks'
   predictions (one gated Hungarian assignment per camera, so a track takes at most one row per
   camera); a row that disagrees with what the track's prediction and its other rows say together
   is let go again. Then everything is clustered: the tracks' groups and the free rows merge,
   closest first, while their fused positions agree within ``cluster_gate``, never joining two rows
   of one camera or of two classes. A cluster holding a track continues it (two tracks in one
   cluster were one object seen twice: the older continues, the younger ends); the other clusters
   are matched to the tracks that got nothing (one more gated assignment), and the rest are new.
3. **Track on the ground.** Each track's cluster, fused, updates a Kalman filter in metres whose
   time step is the clock's: frame rates of 2 to 60 fps, and dropped instants, need no retuning.
   A track gets a global id after ``min_hits`` consecutive instants and ends when unseen for
   ``max_unseen_s``.

Per-camera tracking followed by tracklet association (``crossview.multicam.association``) is the
other way to give global ids, and the right one for cameras that do not overlap. On overlapping
views of a crowd at a low frame rate it fails where this succeeds: at 2 fps a person moves
further between frames than her box is wide, so each camera's tracker splits her, and every split
is a cross-camera link to get right. Fusing first puts all views' evidence in one place before any
link over time is made. See ``docs/site.md`` for when to use which.

**Why the tracks seed the grouping.** Clustering each instant on its own (then linking clusters)
is the plain method, and with perfect boxes it does well; but with a detector's jitter two people
half a metre apart are as far from each other as one person's two views are, and the clusters mix.
The tracks know where everyone is to a decimetre or so, from every earlier instant: matching each
view to them first resolves most of that. Clustering what is left keeps the plain method's
strengths (newcomers, a track whose prediction strayed) and its order independence: the result
depends on neither the cameras' order nor the rows'. Measured in ``docs/benchmarks.md``.

**Uncertainty.** A located point errs for three reasons, each modelled:

- *pixel noise* of the box edges (``box_sigma_px``, ``box_sigma_fraction`` of the box height) and
  of the calibration (``calibration_sigma_px``), carried to the ground through the local Jacobian
  of the image-to-ground map (one-pixel differences of ``GroundProjector``): a far object, or a
  camera low over the ground, stretches a pixel into metres along the line of sight, and the
  covariance grows and turns with it. A box cut by the image's left or right border is centred on
  its visible part: half its width more;
- *where in the object the point lands*: a box's bottom edge images the near side of the
  footprint, ``foot_offset_m`` short of the centre along the line of sight, which is added back.
  Where the camera is well above the object's top, ``Locator``'s two-edge estimate (the rays of the
  box's bottom and top edges met with the ground and with the class height) finds the centre too,
  but it errs by ``distance * height_sigma_m / (camera height - class height)``: fine for a car
  from a mast, useless for a person from a camera at head height (on the UCLA auditorium views,
  1.5 m up, its ray misses the plane for 97% of the boxes). The two are blended by their
  variances, so each box gets the better one, smoothly. A box cut by the bottom border has no
  foot, and is placed from its top edge alone where that is possible;
- *the ground itself*: ``ground_sigma_m``, a floor.

**Motion.** The filter's state is position and velocity; the velocity is a random walk that
forgets itself over ``velocity_memory_s`` (the Singer model; ``inf`` is constant velocity). In a
crowd a person keeps a heading for about a second before someone makes her slow, stop or step
aside, and predicting further from an old velocity sends her into her neighbour.

**Matching** rows or clusters to tracks minimises minus the log-likelihood, the squared Mahalanobis
distance plus the log-determinant of the joint covariance: a coasting track whose prediction has
spread costs more at the same distance than one seen a moment ago, so it does not take a newcomer.
Leaving a pair unmatched costs exactly the gate, ``-2 ln birth_density`` (a track takes a row only
where its density beats that of something new): every cost is clipped at the gate and clipped pairs
are refused after the solve. With one gate per problem that has the same optimum as an augmented
matrix whose unmatched rows and columns cost half the gate each, so the solver never buys a second
match with a swap of identities, as a huge "forbidden" cost would let it.

Ids: a global id is minted when a track is confirmed, in the order the tracks were born (tracks
born together in cluster order: their first row's camera, in the order the cameras were given, then
the row). The same input gives the same ids; ids are never reused. State is the live tracks only.

>>> import numpy as np
>>> from crossview.core.detections import Detections
>>> from crossview.multicam.geometry import look_at_camera, world_to_image
>>> cameras = [look_at_camera(n, 640, 480, 60, position=p, target=(0, 0, 0))
...            for n, p in (("a", (-8, 0, 4)), ("b", (8, 0, 4)))]
>>> def box(camera, x):  # a 0.5 m wide, 1.75 m tall upright slab facing the camera at (x, 0)
...     corners = world_to_image(camera, [[x, -0.25, 0], [x, 0.25, 0], [x, -0.25, 1.75], [x, 0.25, 1.75]])
...     return [*corners.min(axis=0), *corners.max(axis=0)]
>>> fusion = GroundFusion(cameras, FusionConfig(min_hits=1))
>>> views = {c.id: Detections(xyxy=[box(c, -1.0), box(c, 1.5)]) for c in cameras}
>>> fused = fusion.update(0.0, views)
>>> fused.global_ids["a"].tolist(), fused.global_ids["b"].tolist()
([0, 1], [0, 1])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import linear_sum_assignment

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.multicam.geometry import GroundProjector, camera_centre, foot_points
from crossview.multicam.tracklets import CAR, DEFAULT_CLASSES, PERSON, Locator, ObjectClass

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

NO_ID = -1


# ------------------------------------------------------------------------------------ configuration
class ClassModel(BaseModel):
    """How one class of object is located and how it moves (``FusionConfig.classes``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    class_id: int = Field(ge=-1, le=2**31 - 1, description="the detector's class id (COCO: 0 person, 2 car)")
    foot_offset_m: float = Field(
        ge=0,
        allow_inf_nan=False,
        description="metres: how far beyond the ground point of a box's bottom centre the object's "
        "centre lies, along the line of sight. The bottom edge images the footprint's near side: "
        "the leading foot of a person (0.15 m), the near side or end of a car (1.2 m on average)",
    )
    foot_sigma_m: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="metres: the spread of that offset (stance, heading, size): the standard "
        "deviation of a foot point, beyond pixel noise and calibration",
    )
    height_sigma_m: float = Field(
        gt=0,
        description="metres: how much heights vary around the class height of ``ObjectClass`` "
        "(``Locator``); it sets the error of the two-edge estimate. ``inf``: never use it",
    )
    motion_noise: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="m²/s³: spectral density of the white-noise acceleration that drives the ground "
        "tracker's velocity; its square root is the change of speed (m/s) to expect in a second",
    )
    velocity_memory_s: float = Field(
        gt=0,
        description="seconds: how long a velocity persists (``inf``: constant velocity). A person in "
        "a crowd keeps a heading for about a second before someone makes her slow, stop or step "
        "aside; a car keeps it for several",
    )
    speed_sigma_mps: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="m/s: spread of a new track's unknown velocity (typical speed of the class)",
    )


PERSON_MODEL = ClassModel(
    class_id=PERSON,
    foot_offset_m=0.15,
    foot_sigma_m=0.1,
    height_sigma_m=0.1,
    motion_noise=2.0,
    velocity_memory_s=1.0,
    speed_sigma_mps=1.5,
)
CAR_MODEL = ClassModel(
    class_id=CAR,
    foot_offset_m=1.2,
    foot_sigma_m=0.7,
    height_sigma_m=0.2,
    motion_noise=4.0,
    velocity_memory_s=4.0,
    speed_sigma_mps=5.0,
)
OTHER_MODEL = ClassModel(
    class_id=-1,
    foot_offset_m=0.25,
    foot_sigma_m=0.3,
    height_sigma_m=math.inf,
    motion_noise=2.0,
    velocity_memory_s=1.0,
    speed_sigma_mps=2.0,
)


class FusionConfig(BaseModel):
    """Gates, noise and track life of ``GroundFusion``. The defaults suit people and cars seen by
    surveillance cameras at 2-60 fps: the gates are in standard deviations and likelihoods, not
    metres, and times are in seconds, not frames, so no site's scale or frame rate is built in.

    >>> FusionConfig().cluster_gate, FusionConfig(max_unseen_s=2.0).max_unseen_s
    (3.0, 2.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[ClassModel, ...] = Field(
        default=(PERSON_MODEL, CAR_MODEL),
        max_length=256,
        description="per class: where its boxes' feet land, how its height varies and how it moves. "
        "People (COCO 0: the near foot 0.15 m short, walking speeds, a second of heading) and cars "
        "(COCO 2: the near side 1.2 m short, faster, several seconds of heading) by default",
    )
    other_class: ClassModel = Field(
        default=OTHER_MODEL,
        description="for classes not in ``classes`` (its ``class_id`` is not used); located by the "
        "foot point only, since their height is not known",
    )
    box_sigma_px: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="pixels: noise of a box edge whatever its size (annotation, rounding)",
    )
    box_sigma_fraction: float = Field(
        default=0.03,
        ge=0,
        allow_inf_nan=False,
        description="noise of a box edge per pixel of box height: detectors err in proportion to the "
        "object's size, about 3% of it for a good one",
    )
    calibration_sigma_px: float = Field(
        default=2.0,
        ge=0,
        allow_inf_nan=False,
        description="pixels: the calibration's reprojection error (what calibration tools report, "
        "1-3 px for a fair one at 1080p). An error of angle, it costs more metres far away, so it is "
        "carried to the ground like box noise",
    )
    border_margin_px: float = Field(
        default=2.0,
        ge=0,
        allow_inf_nan=False,
        description="pixels: a box edge this close to the image border is taken as cut by it, so "
        "that edge does not bound the object (its foot, its side, or its top is out of view)",
    )
    ground_sigma_m: float = Field(
        default=0.25,
        gt=0,
        allow_inf_nan=False,
        description="metres: the error of any located point that no pixel explains: where a real "
        "detector puts a person's foot (a stride, an arm, a bag), a real calibration, uneven ground. "
        "On the real pose2sim room views of one person disagree by 0.3-0.5 m; 0.05 (uneven ground "
        "alone) split them into 12 ids for 3 people, 0.25 into 8 with the two actors whole. It also "
        "keeps a covariance invertible",
    )
    cluster_gate: float = Field(
        default=3.0,
        gt=0,
        allow_inf_nan=False,
        description="standard deviations (Mahalanobis distance between two located estimates): the "
        "farthest that two views' positions of one object may disagree. A true pair exceeds 3 with "
        "probability exp(-4.5) = 1%. In metres, 0.5 to 1 m for a person near the cameras; more far "
        "away, from a low camera, and for cars",
    )
    birth_density: float = Field(
        default=0.01,
        gt=0,
        allow_inf_nan=False,
        description="per m²: how likely an object nobody tracks (a newcomer, or a false detection) is "
        "at a given place. A track takes a detection or a cluster only where its predicted density is "
        "higher, so the gate is -2 ln of this in negative log-likelihood: 3.2 standard deviations for "
        "a track known to 0.3 m, 1.8 for one coasting with 1.7 m of doubt. One new object per 100 m² "
        "at an instant is a busy entrance",
    )
    min_hits: int = Field(
        default=2,
        ge=1,
        le=100,
        description="consecutive instants a new track must be seen before it gets a global id: one "
        "confirmation filters a false positive of one instant, which a fused view rarely repeats",
    )
    max_unseen_s: float = Field(
        default=1.5,
        gt=0,
        le=600,  # the state is the live tracks: a bound on their life bounds it
        allow_inf_nan=False,
        description="seconds a confirmed track is kept after it was last seen, in site time so the "
        "same at 2 and at 60 fps: long enough to bridge a few instants missed in every view, short "
        "enough that a coasting prediction has not spread over the neighbours",
    )

    @model_validator(mode="after")
    def _unique_classes(self) -> FusionConfig:
        ids = [model.class_id for model in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"classes name a class id twice: {sorted(ids)}")
        return self

    def model_of(self, class_id: int) -> ClassModel:
        """The model of a class (``other_class`` when it has none)."""
        for model in self.classes:
            if model.class_id == class_id:
                return model
        return self.other_class


# ------------------------------------------------------------------------------------------ output
@dataclass(frozen=True, slots=True, eq=False)
class FusedInstant:
    """What ``GroundFusion.update`` found at one instant.

    ``global_ids[camera]``: ``(N,)`` int64, row-aligned with that camera's detections: the global id
    of the confirmed track each row belongs to, ``-1`` where the row could not be located or its track
    is not confirmed yet. ``ground[camera]``: ``(N, 2)`` located positions in metres (``NaN`` where not
    located). Cameras absent from the input are absent here. The confirmed live tracks, ordered by id:
    ``track_ids (K,)``, ``class_ids (K,)``, fused ``positions (K, 2)`` and ``velocities (K, 2)``
    (metres, m/s; the filter's estimate), and ``observed (K,)``: whether the track was seen at this
    instant (otherwise its position is a prediction).
    """

    timestamp: float
    global_ids: Mapping[str, IntArray]
    ground: Mapping[str, FloatArray]
    track_ids: IntArray
    class_ids: IntArray
    positions: FloatArray
    velocities: FloatArray
    observed: BoolArray

    def label(self, views: Mapping[str, Detections]) -> dict[str, Detections]:
        """The given detections with ``global_id`` filled (the views passed to ``update``)."""
        labelled: dict[str, Detections] = {}
        for camera_id, detections in views.items():
            ids = self.global_ids.get(camera_id)
            if ids is None or ids.shape != (len(detections),):
                raise ValueError(f"camera {camera_id!r}: these detections are not the ones fused")
            labelled[camera_id] = detections.replace(global_id=ids)
        return labelled


# --------------------------------------------------------------------------------------- geometry
def _inverse2(matrices: FloatArray) -> FloatArray:
    """Inverses of ``(..., 2, 2)`` matrices, written out (``np.linalg.inv`` is slower on tiny ones)."""
    a, b = matrices[..., 0, 0], matrices[..., 0, 1]
    c, d = matrices[..., 1, 0], matrices[..., 1, 1]
    determinant = a * d - b * c
    inverse = np.empty_like(matrices)
    inverse[..., 0, 0], inverse[..., 0, 1] = d / determinant, -b / determinant
    inverse[..., 1, 0], inverse[..., 1, 1] = -c / determinant, a / determinant
    return inverse


def _mahalanobis(difference: FloatArray, covariance: FloatArray) -> FloatArray:
    """``sqrt(d^T C^-1 d)`` for ``(..., 2)`` differences and ``(..., 2, 2)`` covariances."""
    a, b = covariance[..., 0, 0], covariance[..., 0, 1]
    c, d = covariance[..., 1, 0], covariance[..., 1, 1]
    x, y = difference[..., 0], difference[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        squared = (d * x * x - (b + c) * x * y + a * y * y) / (a * d - b * c)
    distance: FloatArray = np.sqrt(np.maximum(squared, 0.0))
    return distance


class _View:
    """One calibrated camera's locating machinery, built once."""

    def __init__(self, camera: Camera, classes: Sequence[ObjectClass]) -> None:
        self.camera = camera
        self.locator = Locator(camera, classes)
        self.projector = GroundProjector(camera)
        self.heights = {known.class_id: known.height_m for known in classes}
        self.centre: FloatArray | None = camera_centre(camera) if camera.intrinsics is not None else None

    def locate(
        self, detections: Detections, config: FusionConfig
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Ground points ``(N, 2)``, their covariances ``(N, 2, 2)`` and which rows are located."""
        boxes = detections.xyxy.astype(np.float64)
        n = len(boxes)
        classes = detections.class_id
        models = [config.model_of(int(c)) for c in classes.tolist()]
        offset = np.array([m.foot_offset_m for m in models], np.float64).reshape(n)
        foot_var = np.array([m.foot_sigma_m for m in models], np.float64).reshape(n) ** 2
        height_sigma = np.array([m.height_sigma_m for m in models], np.float64).reshape(n)
        class_height = np.array([self.heights.get(int(c), math.nan) for c in classes.tolist()]).reshape(n)
        margin = config.border_margin_px
        cut_side = (boxes[:, 0] <= margin) | (boxes[:, 2] >= self.camera.width - margin)
        cut_top = boxes[:, 1] <= margin
        cut_bottom = boxes[:, 3] >= self.camera.height - margin

        foot = foot_points(boxes)
        near = self.projector.to_ground(foot)
        # pixel noise, carried to the ground through the local Jacobian (one-pixel differences); a box
        # cut by the left or right border is centred on its visible part, up to half its width off
        along_u = self.projector.to_ground(foot + np.array([1.0, 0.0])) - near
        along_v = self.projector.to_ground(foot + np.array([0.0, 1.0])) - near
        variance_v = (
            config.box_sigma_px**2
            + (config.box_sigma_fraction * (boxes[:, 3] - boxes[:, 1])) ** 2
            + config.calibration_sigma_px**2
        )
        variance_u = variance_v + np.where(cut_side, ((boxes[:, 2] - boxes[:, 0]) / 2) ** 2, 0.0)
        pixel_cov = variance_u[:, None, None] * (along_u[:, :, None] * along_u[:, None, :]) + variance_v[
            :, None, None
        ] * (along_v[:, :, None] * along_v[:, None, :])

        # where in the object: the foot point moved to the centre along the line of sight, blended
        # with the two-edge estimate where the camera is high enough for that to be better; a box
        # cut by the bottom border has no foot, and only the top edge (at the class height) places it
        point = np.where(cut_bottom[:, None], np.nan, near)
        model_var = foot_var
        if self.centre is not None:
            sight = near - self.centre[:2]
            with np.errstate(divide="ignore", invalid="ignore"):
                sight /= np.linalg.norm(sight, axis=1, keepdims=True)
            point = point + offset[:, None] * sight
            lift = self.centre[2] - class_height
            two_edge = self.locator.locate(boxes.astype(np.float32), classes)
            far = 2 * two_edge - near  # the top edge's ray at the class height: the far side
            reach = np.linalg.norm(far - self.centre[:2], axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                far_var = (reach * height_sigma / lift) ** 2
            usable = (lift > 0) & ~cut_top & np.isfinite(far_var) & np.all(np.isfinite(far), axis=1)
            edge_var = np.where(usable, far_var / 4, np.inf)
            weight = np.where(usable & ~cut_bottom, foot_var / (foot_var + edge_var), 0.0)
            point = np.where(
                usable[:, None] & ~cut_bottom[:, None], point + weight[:, None] * (two_edge - point), point
            )
            model_var = foot_var * (1.0 - weight)
            from_top = usable & cut_bottom
            point = np.where(from_top[:, None], far - offset[:, None] * sight, point)
            model_var = np.where(from_top, far_var + foot_var, model_var)
            pixel_cov[from_top] *= 0.0  # the bottom edge's pixels say nothing here
        covariance = pixel_cov + (model_var + config.ground_sigma_m**2)[:, None, None] * np.eye(2)
        located = np.all(np.isfinite(point), axis=1) & np.all(np.isfinite(covariance), axis=(1, 2))
        point = np.where(located[:, None], point, np.nan)
        return point, covariance, np.asarray(located, dtype=np.bool_)


# ------------------------------------------------------------------------------------- clustering
def cluster_views(
    points: FloatArray,
    covariances: FloatArray,
    cameras: IntArray,
    gate: float,
    groups: IntArray | None = None,
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Agglomerate located detections of one class into objects (see the module docstring).

    ``points (n, 2)``, ``covariances (n, 2, 2)``, ``cameras (n,)`` (a camera number per row; rows of
    one camera never share a cluster). ``groups (n,)`` optionally starts from a partition (rows with
    one label are already one object; ``-1``: a row on its own). Returns each row's cluster (the
    smallest row index among its members), and each row's cluster's fused position and covariance
    (information-weighted).

    Row 3 is nearer row 1 than row 0 is, and shares row 0's camera, so row 0 stays alone:

    >>> points = np.array([[0.0, 0.0], [0.3, 0.0], [5.0, 0.0], [0.1, 0.1]])
    >>> covariances = np.repeat(0.04 * np.eye(2)[None], 4, axis=0)
    >>> cluster_views(points, covariances, np.array([0, 1, 1, 0]), gate=3.0)[0].tolist()
    [0, 1, 2, 1]
    """
    n = len(points)
    rows = np.arange(n, dtype=np.int64)
    if groups is None:
        start = rows
    else:  # each row starts in its group's first row's cluster
        labels = np.where(groups >= 0, groups, -1 - rows)
        _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
        start = first[inverse.reshape(-1)].astype(np.int64)
    heads, slot = np.unique(start, return_inverse=True)
    slot = slot.reshape(-1)
    m = len(heads)
    row_information = _inverse2(covariances)
    information = np.zeros((m, 2, 2))
    weighted = np.zeros((m, 2))
    np.add.at(information, slot, row_information)
    np.add.at(weighted, slot, np.einsum("nij,nj->ni", row_information, points))
    covariance = _inverse2(information)
    mean = np.einsum("mij,mj->mi", covariance, weighted)
    members = np.zeros((m, int(cameras.max(initial=-1)) + 1), dtype=np.bool_)
    members[slot, cameras] = True
    owner = np.arange(m, dtype=np.int64)
    if m > 1:
        distance = _mahalanobis(mean[:, None] - mean[None], covariance[:, None] + covariance[None])
        shared = (members.astype(np.int64) @ members.T.astype(np.int64)) > 0
        distance[shared | (distance > gate)] = np.inf  # a camera's two rows are two objects
        alive = np.ones(m, dtype=np.bool_)
        while True:
            flat = int(np.argmin(distance))
            first_slot, second_slot = divmod(flat, m)
            if not distance[first_slot, second_slot] <= gate:
                break
            keep, gone = min(first_slot, second_slot), max(first_slot, second_slot)
            information[keep] += information[gone]
            weighted[keep] += weighted[gone]
            covariance[keep] = _inverse2(information[keep])
            mean[keep] = covariance[keep] @ weighted[keep]
            members[keep] |= members[gone]
            alive[gone] = False
            owner[owner == gone] = keep
            distance[gone, :] = np.inf
            distance[:, gone] = np.inf
            row = _mahalanobis(mean[keep] - mean, covariance[keep] + covariance)
            row[~alive | members[:, members[keep]].any(axis=1) | (row > gate)] = np.inf
            distance[keep, :] = row
            distance[:, keep] = row
    final = owner[slot]
    return heads[final], mean[final], covariance[final]


# ---------------------------------------------------------------------------------------- tracking
def _motion(dt: float, memory_s: float, noise: float) -> tuple[FloatArray, FloatArray]:
    """Transition and process noise over ``dt`` of state ``(x, y, vx, vy)``, one class.

    The velocity is a random walk (``noise``: acceleration spectral density, m²/s³) that forgets
    itself with time constant ``memory_s`` (an Ornstein-Uhlenbeck velocity, the Singer model);
    ``memory_s = inf`` is the plain constant-velocity model. Exact for any ``dt``.
    """
    ratio = dt / memory_s
    if ratio < 1e-6:  # constant velocity (and the limit of the formulas below)
        step, keep = dt, 1.0
        position_var, cross, velocity_var = noise * dt**3 / 3, noise * dt**2 / 2, noise * dt
    else:
        keep = math.exp(-ratio)
        step = memory_s * (1 - keep)
        spread = noise * memory_s / 2  # the velocity's stationary variance
        velocity_var = spread * (1 - keep**2)
        cross = spread * memory_s * (1 - keep) ** 2
        position_var = spread * memory_s**2 * (2 * ratio - 3 + 4 * keep - keep**2)
    transition = np.eye(4)
    transition[0, 2] = transition[1, 3] = step
    transition[2, 2] = transition[3, 3] = keep
    block = np.array([[position_var, cross], [cross, velocity_var]])
    process = np.zeros((4, 4))
    process[np.ix_([0, 2], [0, 2])] = block
    process[np.ix_([1, 3], [1, 3])] = block
    return transition, process


def gated_assignment(cost: FloatArray, gate: float) -> tuple[IntArray, IntArray]:
    """Minimum-cost matching in which leaving a row and a column unmatched costs exactly ``gate``.

    Costs are clipped at ``gate`` (``inf`` included) and pairs at the gate refused after the solve,
    which has the same optimum as the augmented problem where each unmatched row or column costs
    ``gate / 2`` (see the module docstring). Returns matched ``(rows, columns)``.

    >>> cost = np.array([[0.1, 0.7], [0.5, np.inf]])  # maximising matches would give 0.7 + 0.5
    >>> [a.tolist() for a in gated_assignment(cost, 1.0)]
    [[0], [0]]
    """
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    clipped = np.minimum(cost, gate)
    rows, columns = linear_sum_assignment(clipped)
    keep = clipped[rows, columns] < gate
    return rows[keep].astype(np.int64), columns[keep].astype(np.int64)


@dataclass(frozen=True, slots=True, eq=False)
class _Rows:
    """One instant's detections of every camera, concatenated in camera order, located."""

    points: FloatArray  # (n, 2)
    covariances: FloatArray  # (n, 2, 2)
    cameras: IntArray  # (n,) camera numbers
    classes: IntArray  # (n,)
    located: BoolArray  # (n,)


class GroundFusion:
    """Global ids for overlapping calibrated views by fusing their detections on the ground.

    ``cameras``: every camera that may appear in ``update``'s views (an uncalibrated one is allowed:
    its rows get ``-1``). ``classes``: the heights ``Locator`` uses for the two-edge estimate.
    ``update(timestamp, views)`` takes one instant: each camera's detections at that time (a camera
    may be missing), timestamps strictly increasing, in seconds. See the module docstring.
    """

    def __init__(
        self,
        cameras: Sequence[Camera],
        config: FusionConfig | None = None,
        *,
        classes: Sequence[ObjectClass] = DEFAULT_CLASSES,
    ) -> None:
        names = [camera.id for camera in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"cameras name an id twice: {names}")
        self.config = config or FusionConfig()
        self.cameras = tuple(cameras)
        self._order = {name: number for number, name in enumerate(names)}
        self._views: dict[str, _View | None] = {
            camera.id: _View(camera, classes) if camera.has_ground_calibration else None for camera in cameras
        }
        self._time = -math.inf
        self._minted = 0
        self._born = 0
        # live tracks, one row each: state (x, y, vx, vy), covariance, class, hits, last seen, ids
        self._state = np.zeros((0, 4))
        self._covariance = np.zeros((0, 4, 4))
        self._class = np.zeros(0, np.int64)
        self._hits = np.zeros(0, np.int64)
        self._seen = np.zeros(0, np.float64)
        self._global = np.zeros(0, np.int64)
        self._serial = np.zeros(0, np.int64)

    @property
    def identities(self) -> int:
        """Global ids minted so far."""
        return self._minted

    @property
    def live_tracks(self) -> int:
        """Tracks held now, tentative ones included: the state's size."""
        return int(self._state.shape[0])

    def update(self, timestamp: float, views: Mapping[str, Detections]) -> FusedInstant:
        """Fuse one instant's views; returns each row's global id and the confirmed tracks."""
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be finite, got {timestamp}")
        if timestamp <= self._time:
            raise ValueError(f"timestamps must increase: {self._time} then {timestamp}")
        unknown = sorted(set(views) - set(self._views))
        if unknown:
            raise ValueError(f"views of unknown cameras {unknown}; known: {sorted(self._views)}")
        order = sorted(views, key=self._order.__getitem__)
        rows, ground = self._locate(views, order)
        self._predict(timestamp)

        # each row's track (an index into the live tracks) or -1
        member = self._release_outliers(rows, self._assign_to_tracks(rows))
        head, track_of = self._cluster(rows, member)
        track_of = self._recover(rows, head, track_of)
        absorbed = np.setdiff1d(member[member >= 0], track_of[track_of >= 0])
        member = self._update_tracks(rows, head, track_of, absorbed, timestamp)
        self._time = timestamp

        row_ids = np.full(len(member), NO_ID, np.int64)
        row_ids[member >= 0] = self._global[member[member >= 0]]
        global_ids: dict[str, IntArray] = {}
        start = 0
        for name in order:
            n = len(views[name])
            global_ids[name] = row_ids[start : start + n]
            start += n
        confirmed = np.flatnonzero(self._global >= 0)
        confirmed = confirmed[np.argsort(self._global[confirmed], kind="stable")]
        return FusedInstant(
            timestamp=float(timestamp),
            global_ids=global_ids,
            ground=ground,
            track_ids=self._global[confirmed].copy(),
            class_ids=self._class[confirmed].copy(),
            positions=self._state[confirmed, :2].copy(),
            velocities=self._state[confirmed, 2:].copy(),
            observed=self._seen[confirmed] == timestamp,
        )

    # ------------------------------------------------------------------------------- the steps
    def _locate(
        self, views: Mapping[str, Detections], order: Sequence[str]
    ) -> tuple[_Rows, dict[str, FloatArray]]:
        ground: dict[str, FloatArray] = {}
        points, covariances, cameras, classes, located = [], [], [], [], []
        for name in order:
            detections = views[name]
            view = self._views[name]
            n = len(detections)
            if view is None or n == 0:
                point, covariance = np.full((n, 2), np.nan), np.full((n, 2, 2), np.nan)
                ok = np.zeros(n, np.bool_)
            else:
                point, covariance, ok = view.locate(detections, self.config)
            ground[name] = point
            points.append(point)
            covariances.append(covariance)
            cameras.append(np.full(n, self._order[name], np.int64))
            classes.append(detections.class_id.astype(np.int64))
            located.append(ok)
        rows = _Rows(
            points=np.concatenate([np.zeros((0, 2)), *points]),
            covariances=np.concatenate([np.zeros((0, 2, 2)), *covariances]),
            cameras=np.concatenate([np.zeros(0, np.int64), *cameras]),
            classes=np.concatenate([np.zeros(0, np.int64), *classes]),
            located=np.concatenate([np.zeros(0, np.bool_), *located]),
        )
        return rows, ground

    def _predict(self, timestamp: float) -> None:
        if not len(self._state):
            return
        dt = timestamp - self._time
        for class_id in np.unique(self._class).tolist():
            rows = self._class == class_id
            model = self.config.model_of(class_id)
            transition, process = _motion(dt, model.velocity_memory_s, model.motion_noise)
            self._state[rows] = self._state[rows] @ transition.T
            self._covariance[rows] = transition @ self._covariance[rows] @ transition.T + process

    @property
    def _track_gate(self) -> float:
        return -2.0 * math.log(self.config.birth_density)

    def _track_costs(self, points: FloatArray, covariances: FloatArray, classes: IntArray) -> FloatArray:
        """``(tracks, rows)``: minus twice the log of each track's predicted density at each point.

        A likelihood, not a distance: a coasting track, whose prediction has spread, costs more at
        the same distance than one seen a moment ago, so it does not take a newcomer nearby.
        """
        joint = self._covariance[:, None, :2, :2] + covariances[None]
        determinant = joint[..., 0, 0] * joint[..., 1, 1] - joint[..., 0, 1] * joint[..., 1, 0]
        distance = _mahalanobis(points[None] - self._state[:, None, :2], joint)
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = distance**2 + np.log((2 * math.pi) ** 2 * determinant)
        cost[(self._class[:, None] != classes[None]) | ~np.isfinite(cost)] = np.inf
        return cost

    def _assign_to_tracks(self, rows: _Rows) -> IntArray:
        """Each camera's rows to the predicted tracks: one gated Hungarian assignment per camera."""
        member = np.full(len(rows.points), NO_ID, np.int64)
        if not len(self._state):
            return member
        for camera in np.unique(rows.cameras[rows.located]).tolist():
            mine = np.flatnonzero(rows.located & (rows.cameras == camera))
            cost = self._track_costs(rows.points[mine], rows.covariances[mine], rows.classes[mine])
            tracks, columns = gated_assignment(cost, self._track_gate)
            member[mine[columns]] = tracks
        return member

    def _release_outliers(self, rows: _Rows, member: IntArray) -> IntArray:
        """Free the rows that disagree with the rest of their track's evidence.

        Each camera chose on its own; a row is kept if it lies within ``cluster_gate`` of what the
        track's prediction and its other rows say together (leave-one-out fusion). The worst row of
        each track goes first, until all agree.
        """
        member = member.copy()
        if not len(self._state):
            return member
        prior_information = _inverse2(self._covariance[:, :2, :2])
        prior_weighted = np.einsum("tij,tj->ti", prior_information, self._state[:, :2])
        information = _inverse2(np.where(rows.located[:, None, None], rows.covariances, np.eye(2)))
        weighted = np.einsum("nij,nj->ni", information, np.nan_to_num(rows.points))
        while True:
            kept = np.flatnonzero(member >= 0)
            if not len(kept):
                return member
            total_information = prior_information.copy()
            total_weighted = prior_weighted.copy()
            np.add.at(total_information, member[kept], information[kept])
            np.add.at(total_weighted, member[kept], weighted[kept])
            others = total_information[member[kept]] - information[kept]
            others_covariance = _inverse2(others)
            others_mean = np.einsum(
                "nij,nj->ni", others_covariance, total_weighted[member[kept]] - weighted[kept]
            )
            distance = _mahalanobis(
                rows.points[kept] - others_mean, rows.covariances[kept] + others_covariance
            )
            bad = distance > self.config.cluster_gate
            if not bad.any():
                return member
            # the worst offender of each track with any
            order = np.lexsort((-distance[bad], member[kept][bad]))
            candidates = kept[bad][order]
            first = np.r_[True, np.diff(member[candidates]) != 0]
            member[candidates[first]] = NO_ID

    def _cluster(self, rows: _Rows, member: IntArray) -> tuple[IntArray, IntArray]:
        """All located rows clustered, starting from the tracks' groups; each row's cluster head and
        the track each cluster continues (the oldest track among its rows; -1 for a new object).

        Two tracks' groups that end in one cluster are one object seen twice (each camera chose on
        its own): the older track continues, the younger ends.
        """
        head = np.full(len(rows.points), NO_ID, np.int64)
        for class_id in np.unique(rows.classes[rows.located]).tolist():
            mine = np.flatnonzero(rows.located & (rows.classes == class_id))
            owner, _, _ = cluster_views(
                rows.points[mine],
                rows.covariances[mine],
                rows.cameras[mine],
                self.config.cluster_gate,
                groups=member[mine],
            )
            head[mine] = mine[owner]
        heads = np.unique(head[head >= 0])
        track_of = np.full(len(heads), NO_ID, np.int64)
        grouped = (head >= 0) & (member >= 0)
        if grouped.any():
            slot = np.searchsorted(heads, head[grouped])
            age = self._serial[member[grouped]]
            order = np.lexsort((age, slot))  # per cluster, oldest track first
            first = np.r_[True, np.diff(slot[order]) != 0]
            track_of[slot[order][first]] = member[grouped][order][first]
        return head, track_of

    def _recover(self, rows: _Rows, head: IntArray, track_of: IntArray) -> IntArray:
        """New clusters against the tracks that got no row (a track whose prediction strayed)."""
        track_of = track_of.copy()
        heads = np.unique(head[head >= 0])
        idle = np.setdiff1d(np.arange(len(self._state)), track_of[track_of >= 0])
        new = np.flatnonzero(track_of < 0)
        if not len(idle) or not len(new):
            return track_of
        mean, covariance = _fuse_groups(rows, head, heads[new])
        cost = self._track_costs(mean, covariance, rows.classes[heads[new]])[idle]
        tracks, columns = gated_assignment(cost, self._track_gate)
        track_of[new[columns]] = idle[tracks]
        return track_of

    def _update_tracks(
        self, rows: _Rows, head: IntArray, track_of: IntArray, absorbed: IntArray, timestamp: float
    ) -> IntArray:
        """Kalman updates, ends, births and confirmations; returns each row's track index or -1."""
        config = self.config
        heads = np.unique(head[head >= 0])
        continued = track_of >= 0
        if continued.any():
            measured, noise = _fuse_groups(rows, head, heads[continued])
            observed = track_of[continued]
            state, prior = self._state[observed], self._covariance[observed]
            innovation = measured - state[:, :2]
            gain = prior[:, :, :2] @ _inverse2(prior[:, :2, :2] + noise)
            self._state[observed] = state + np.einsum("kij,kj->ki", gain, innovation)
            posterior = prior - gain @ prior[:, :2, :]
            self._covariance[observed] = (posterior + posterior.transpose(0, 2, 1)) / 2
            self._hits[observed] += 1
            self._seen[observed] = timestamp

        # end tracks: tentative ones at their first miss, confirmed ones after max_unseen_s, and
        # those found to be a second track of an object another one follows
        seen = self._seen == timestamp
        stale = timestamp - self._seen > config.max_unseen_s
        keep = seen | ((self._global >= 0) & ~stale)
        keep[absorbed] = False
        # continued tracks are seen, so kept; -1 picks the appended -1
        track_of = np.r_[np.cumsum(keep) - 1, NO_ID][track_of]
        self._keep(keep)

        # start tracks from the clusters no track continues, in cluster order
        births = np.flatnonzero(~continued)
        if len(births):
            position, covariance = _fuse_groups(rows, head, heads[births])
            classes = rows.classes[heads[births]]
            speed = np.array([config.model_of(int(c)).speed_sigma_mps for c in classes.tolist()])
            initial = np.zeros((len(births), 4, 4))
            initial[:, :2, :2] = covariance
            initial[:, 2, 2] = initial[:, 3, 3] = speed**2
            track_of[births] = len(self._state) + np.arange(len(births))
            zeros = np.zeros((len(births), 2))
            self._state = np.vstack([self._state, np.column_stack([position, zeros])])
            self._covariance = np.concatenate([self._covariance, initial])
            self._class = np.concatenate([self._class, classes])
            self._hits = np.concatenate([self._hits, np.ones(len(births), np.int64)])
            self._seen = np.concatenate([self._seen, np.full(len(births), timestamp)])
            self._global = np.concatenate([self._global, np.full(len(births), NO_ID, np.int64)])
            serials = self._born + np.arange(len(births), dtype=np.int64)
            self._serial = np.concatenate([self._serial, serials])
            self._born += len(births)

        # confirm: mint ids in birth order
        ready = np.flatnonzero((self._global < 0) & (self._hits >= config.min_hits))
        ready = ready[np.argsort(self._serial[ready], kind="stable")]
        self._global[ready] = self._minted + np.arange(len(ready), dtype=np.int64)
        self._minted += len(ready)

        member = np.full(len(head), NO_ID, np.int64)
        placed = head >= 0
        member[placed] = track_of[np.searchsorted(heads, head[placed])]
        return member

    def _keep(self, keep: BoolArray) -> None:
        self._state = self._state[keep]
        self._covariance = self._covariance[keep]
        self._class = self._class[keep]
        self._hits = self._hits[keep]
        self._seen = self._seen[keep]
        self._global = self._global[keep]
        self._serial = self._serial[keep]


def _fuse_groups(rows: _Rows, group: IntArray, labels: IntArray) -> tuple[FloatArray, FloatArray]:
    """Information-weighted position and covariance of the rows of each group ``labels[k]``."""
    chosen = np.flatnonzero(np.isin(group, labels))
    slot = np.searchsorted(labels, group[chosen])
    information = _inverse2(rows.covariances[chosen])
    total = np.zeros((len(labels), 2, 2))
    weighted = np.zeros((len(labels), 2))
    np.add.at(total, slot, information)
    np.add.at(weighted, slot, np.einsum("nij,nj->ni", information, rows.points[chosen]))
    covariance = _inverse2(total)
    return np.einsum("kij,kj->ki", covariance, weighted), covariance
