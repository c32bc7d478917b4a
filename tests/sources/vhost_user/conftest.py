"""Fixtures for the vhost-user interposer tests: real qemu-storage-daemon
back-ends, a real engine and I/O loop, and the interposer between them.
Every process, socket and fd they create is released at teardown."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.markers import QEMU, needs
from tests.support.qsd import StorageDaemon, vhost_user_blk_daemon
from tests.support.vhost_user_rig import Context, InterposerRig


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """After every other fixture is torn down, collect cyclic garbage, so an
    engine this test made closes its epoll/eventfd now and not during a later
    test that counts fds."""
    yield
    gc.collect()


@pytest.fixture
@needs(QEMU)
def qsd(sock_dir: Path) -> Iterator[StorageDaemon]:
    """qemu-storage-daemon exporting two vhost-user-blk devices (2 queues each)."""
    daemon = vhost_user_blk_daemon(sock_dir, exports=2)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def context() -> Iterator[Context]:
    """A started engine, I/O loop and event log."""
    ctx = Context()
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def rig(context: Context, qsd: StorageDaemon, sock_dir: Path) -> Iterator[InterposerRig]:
    """The interposer in pass mode in front of both qsd exports (devices blk0, blk1)."""
    r = InterposerRig(context, sock_dir, qsd.sockets)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def shadow_rig(context: Context, qsd: StorageDaemon, sock_dir: Path) -> Iterator[InterposerRig]:
    """Like ``rig``, with ``shadow: on`` in the configuration (shadowed from connect)."""
    r = InterposerRig(context, sock_dir, qsd.sockets, shadow=True)
    try:
        yield r
    finally:
        r.close()
