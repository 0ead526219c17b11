"""crossview: multi-camera perception and visual search.

The core types are re-exported here; everything else lives in its subpackage
(``crossview.io``, ``crossview.eval``, ...) and is imported on use, so that
``import crossview`` stays cheap.
"""

from crossview.core import Camera, Detections, Frame

__all__ = ["Camera", "Detections", "Frame", "__version__"]
__version__ = "0.1.0"
