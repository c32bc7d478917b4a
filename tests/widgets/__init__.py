"""Tests of the console widgets (svqtui/widgets/)."""
