"""Synthetic data with ground truth: MOTChallenge-style sequences now, multi-camera sites later."""
