"""Tests of the console package (svqtui/console/): the app, its keys, palette,
feed, formatting and selection, and SVG snapshots of its screens."""
