"""Tether: run media and AI pipeline nodes on remote pipeline servers."""

__version__ = "0.1.0"
