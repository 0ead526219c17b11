"""A synthetic parking facility seen by several calibrated cameras, with full ground truth.

``generate_site`` builds the facility for a ``SiteSpec`` and a seed (plan, cameras, vehicles
that enter, park and leave, pedestrians, one of several scenarios); ``render_site`` draws every
camera's video and writes the ground truth: per-camera MOTChallenge files with global ids, the
multi-camera file with ground-plane positions, ``site.json`` and a site map. ``simulate_site``
does both. See ``docs/simulation.md``.

>>> from crossview.sim.site import SiteSpec, simulate_site
>>> rendered = simulate_site("runs/site", SiteSpec(duration=10.0), seed=0)  # doctest: +SKIP
>>> sorted(rendered.videos)  # doctest: +SKIP
['c1', 'c2', 'c3', 'c4']
"""

from __future__ import annotations

from pathlib import Path

from crossview.sim.site.build import Outage, Site, generate_site
from crossview.sim.site.layout import (
    Box,
    GroundRaster,
    Lighting,
    ParkingSpace,
    SiteCamera,
    SiteMap,
    ground_footprint,
    site_map_image,
    site_map_pixels,
)
from crossview.sim.site.motion import (
    PEDESTRIAN_CLASS,
    VEHICLE_CLASS,
    Actor,
    ParkingSession,
    Trajectories,
)
from crossview.sim.site.render import RenderedSite, camera_pairs, empty_view, render_site
from crossview.sim.site.spec import SCENARIOS, Scenario, SiteSpec


def simulate_site(
    root: str | Path, spec: SiteSpec | None = None, *, seed: int = 0, write_video: bool = True
) -> RenderedSite:
    """``render_site(generate_site(spec, seed), root)``: a whole synthetic site on disk."""
    return render_site(generate_site(spec, seed), root, write_video=write_video)


__all__ = [
    "PEDESTRIAN_CLASS",
    "SCENARIOS",
    "VEHICLE_CLASS",
    "Actor",
    "Box",
    "GroundRaster",
    "Lighting",
    "Outage",
    "ParkingSession",
    "ParkingSpace",
    "RenderedSite",
    "Scenario",
    "Site",
    "SiteCamera",
    "SiteMap",
    "SiteSpec",
    "Trajectories",
    "camera_pairs",
    "empty_view",
    "generate_site",
    "ground_footprint",
    "render_site",
    "simulate_site",
    "site_map_image",
    "site_map_pixels",
]
