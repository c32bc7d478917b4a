"""Fixtures for the lab tests: the real guest fixtures of tests.support.guest."""

from __future__ import annotations

from tests.support.guest import boot_guest, booted_guest, guest_image, storage_daemon

__all__ = ["boot_guest", "booted_guest", "guest_image", "storage_daemon"]
