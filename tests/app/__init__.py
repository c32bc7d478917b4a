"""Tests of the Textual console (svqtui/app.py)."""
