"""Handing a running svqtui over to a new process (docs/design.md#takeover).

Built so far: the transport (a JSON document and any number of fds over a
unix stream socket, svqtui.takeover.transport) and the state document's
versioning (svqtui.takeover.state). Not built yet: the handshake on the
control socket, freezing connections at a message boundary, the engine's
hand-over and ``svqtui --headless --takeover``.
"""
