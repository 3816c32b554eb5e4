"""Measurement and documentation scripts, run as modules: `python -m tools.scale`."""
