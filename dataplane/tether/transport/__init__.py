"""Clients for the pipeline server, one per protocol, behind one interface."""
