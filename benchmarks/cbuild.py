"""Builds and loads the benchmark's C helper module, `_svq_bench`, at run time.

Owns the cffi build of c_relay.c (the reference relay) and c_driver.c (the
load drivers) with bench.h as both cdef and header. The module is compiled
into a cache directory under the system temp dir, keyed by a hash of the
sources and the interpreter, so nothing compiled lives in the repository and
no install step is needed; a second run reuses the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import cffi

HERE = Path(__file__).resolve().parent
MODULE = "_svq_bench"
HEADER = HERE / "bench.h"
SOURCES = (HERE / "c_relay.c", HERE / "c_driver.c")
COMPILE_ARGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


def _digest() -> str:
    h = hashlib.sha256()
    for path in (HEADER, *SOURCES):
        h.update(path.read_bytes())
    h.update(f"{sys.version}|{cffi.__version__}|{COMPILE_ARGS}".encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where this version of the helper module is (or will be) built."""
    return Path(tempfile.gettempdir()) / f"svqtui-bench-{os.getuid()}" / _digest()


def _find_built(directory: Path) -> Path | None:
    found = sorted(directory.glob(f"{MODULE}*.so")) if directory.is_dir() else []
    return found[0] if found else None


def _ffibuilder() -> cffi.FFI:
    builder = cffi.FFI()
    builder.cdef(HEADER.read_text())
    builder.set_source(
        MODULE,
        '#include <stdint.h>\n#include "bench.h"\n',
        sources=[str(p) for p in SOURCES],
        include_dirs=[str(HERE)],
        extra_compile_args=COMPILE_ARGS,
    )
    return builder


def _build(target: Path) -> Path:
    """Compile in a scratch dir, then move it into place (racing runs are fine)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        _ffibuilder().compile(tmpdir=str(scratch), verbose=False)
        with contextlib.suppress(OSError):  # another run got there first
            scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    built = _find_built(target)
    if built is None:
        raise RuntimeError(f"cffi build of {MODULE} produced no module in {target}")
    return built


def load() -> tuple[Any, Any]:
    """Return (ffi, lib) of the helper module, building it first if needed."""
    target = cache_dir()
    path = _find_built(target) or _build(target)
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ffi, module.lib
