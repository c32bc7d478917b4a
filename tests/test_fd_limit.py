"""The open-file soft limit is raised to the hard limit at start (docs/design.md#limits)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    """In a process started with a soft limit of 256 (as under `ulimit -n`),
    raise_fd_limit() raises it to the hard limit and says from what to what;
    a second call changes nothing. (A subprocess: the test run's own limit
    is left alone.)"""
    code = textwrap.dedent(
        """
        import resource
        from svqtui.runtime import raise_fd_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        assert raise_fd_limit() == (256, target), raise_fd_limit
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == target
        assert raise_fd_limit() is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
