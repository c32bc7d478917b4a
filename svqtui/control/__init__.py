"""Headless mode and the control socket: ``svqtui --headless`` serves a unix
socket (svqtui.control.server, wire format in svqtui.control.protocol) that
``svqtui ctl`` and an attaching console drive (svqtui.control.client)."""
