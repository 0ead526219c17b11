"""The runtime: one site file, one graph of stages, run the same way by the CLI, the demo and the
service. ``site`` is the typed site file; the rest arrives a stage at a time (issue 13)."""
