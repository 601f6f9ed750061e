"""Tether: run media and AI pipeline nodes on remote pipeline servers."""
