"""Readers and writers for the standard formats, each raising ``FormatError`` on malformed input.

Submodules: ``mot`` (MOTChallenge), ``coco`` (COCO detection JSON), ``reid`` (re-identification
manifests), ``mtmc`` (AI City multi-camera rows) and ``vatic`` (VATIC annotation rows).
"""

from crossview.io.formats._errors import FormatError

__all__ = ["FormatError"]
