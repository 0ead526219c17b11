"""What a synthetic parking site looks like: its size, cameras, population and scenario."""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Scenario = Literal[
    "default",
    "heavy_occlusion",
    "low_light",
    "camera_outage",
    "lookalike_vehicles",
    "pedestrian_crossing",
]
SCENARIOS: Final[tuple[str, ...]] = get_args(Scenario)


class SiteSpec(BaseModel):
    """Size, cameras, length, population and scenario of a synthetic parking facility.

    The defaults make the site the ``crossview demo`` runs: a 50 x 30 m lot, four cameras at
    640x360 and 10 fps, one minute, eight vehicles and six pedestrians.

    - ``lot_length`` / ``lot_width``: metres along the drive lane (gate to exit) and across it.
    - ``num_cameras``: the first watches the entry gate, the last the exit, the ones between
      split the parking rows into sections that overlap by a strip (at least 2 cameras).
    - ``num_vehicles`` / ``num_pedestrians``: actors of the default scenario; some scenarios add more.
    - ``scenario``: ``"default"`` or one long-tail variation of it (see ``docs/simulation.md``).
    - ``noise``: standard deviation of the per-frame sensor noise, in grey levels.

    >>> SiteSpec().num_frames
    600
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_length: float = Field(default=50.0, ge=40.0, le=200.0)
    lot_width: float = Field(default=30.0, ge=30.0, le=60.0)
    num_cameras: int = Field(default=4, ge=2, le=8)
    fps: float = Field(default=10.0, gt=0.0, le=60.0)
    duration: float = Field(default=60.0, gt=0.0, le=3600.0, description="seconds")
    width: int = Field(default=640, ge=64, le=4096)
    height: int = Field(default=360, ge=64, le=4096)
    num_vehicles: int = Field(default=8, ge=0, le=200)
    num_pedestrians: int = Field(default=6, ge=0, le=200)
    scenario: Scenario = "default"
    noise: float = Field(default=2.0, ge=0.0, le=50.0, description="sensor noise, grey levels")

    @property
    def num_frames(self) -> int:
        """Frames per camera: ``duration * fps``, at least one."""
        return max(1, round(self.duration * self.fps))
