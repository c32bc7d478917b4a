"""Handing a running svqtui over to a new process (docs/design.md#takeover).

``transport`` moves a JSON document and any number of fds over a unix stream
socket; ``state`` versions the document and checks its fd references;
``handshake`` is the ``takeover`` request on the control socket; ``donor``
is the old process's side (refuse, freeze, capture, hand over, or resume);
``successor`` is the new process's side (check everything, adopt after
"released"). What a vhost-user device hands over is
svqtui.sources.vhost_user.handover.
"""
