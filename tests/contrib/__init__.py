"""Tests of contrib/: the Prometheus alert rules and the Grafana dashboard."""
