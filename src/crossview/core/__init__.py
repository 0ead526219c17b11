"""Core data model: one of each type, used by every stage."""

from crossview.core.camera import Camera
from crossview.core.detections import Detections
from crossview.core.frame import Frame

__all__ = ["Camera", "Detections", "Frame"]
