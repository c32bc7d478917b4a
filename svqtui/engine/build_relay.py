"""cffi build script for the relay engine (API mode, compiled at install time).

Owns nothing but the build (relay.c, the loop; poll.c, its polling
policy; fault.c, operator-armed faults): relay.h is both the cdef and the C header, so the
Python view of the shared counters cannot drift from the C layout.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "relay.h").read_text())
ffibuilder.set_source(
    "svqtui.engine._relay",
    '#include <stdint.h>\n#include "relay.h"\n',
    sources=[str(Path("svqtui") / "engine" / name) for name in ("relay.c", "poll.c", "fault.c")],
    include_dirs=[str(Path("svqtui") / "engine")],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
