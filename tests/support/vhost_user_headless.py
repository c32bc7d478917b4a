"""A real ``svqtui --headless`` interposing on real qemu-storage-daemon exports,
for the lifecycle tests (reload, crash and restart, the service protocol).

``write_vhost_config(directory, devices)`` writes a config.yaml with the
demo and QMP discovery off, the control socket in ``directory``, and one
vhost-user device per ``(name, export index, shadow)``: it listens on
``directory/vu<i>.sock`` and forwards to the daemon's ``qsd<i>.sock``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def listen_path(directory: Path, export: int) -> Path:
    return directory / f"vu{export}.sock"


def write_vhost_config(
    directory: Path,
    devices: Sequence[tuple[str, int, bool]],
    refresh: float = 0.2,
    extra: str = "",
) -> Path:
    """config.yaml for ``devices`` (name, export index, shadow); returns its path."""
    cfg = directory / "config.yaml"
    lines = [
        f"refresh: {refresh}",
        "demo: {enabled: false}",
        "qmp: {discover: false}",
        f"control: {{socket: {directory / 'c.sock'}}}",
        "devices:" if devices else "devices: []",
    ]
    for name, export, shadow in devices:
        lines.append(
            f"  - {{name: {name}, listen: {listen_path(directory, export)}, "
            f"backend: {directory / f'qsd{export}.sock'}, shadow: {'on' if shadow else 'off'}}}"
        )
    cfg.write_text("\n".join(lines) + "\n" + extra)
    return cfg
