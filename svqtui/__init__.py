"""svqtui: an operator console for vhost virtqueue notifications, with a
shadow-mode relay engine (svqtui.engine) and device sources (svqtui.sources)."""

__version__ = "0.1.0"
