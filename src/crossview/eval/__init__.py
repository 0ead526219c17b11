"""Metrics: tracking, multi-camera, detection, re-identification, retrieval and latency."""
