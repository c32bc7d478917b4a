"""Reusable test helpers (real processes, sockets, fixtures support)."""
