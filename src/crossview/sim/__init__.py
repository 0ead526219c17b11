"""Synthetic data with ground truth: MOTChallenge-style sequences, a fixed-camera video, and a
multi-camera parking site (``crossview.sim.site``)."""
