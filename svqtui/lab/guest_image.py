"""Build and cache the lab guest: a Debian kernel and a busybox initramfs.

Inputs come from Debian packages installed on the host: the kernel
(``linux-image-cloud-amd64``: /boot/vmlinuz-<ver>, virtio modules from
/lib/modules/<ver>/, found through modules.dep in load order and decompressed
here if packed) and a static busybox (``busybox-static``: /bin/busybox). The
initramfs is a newc cpio written in Python (``svqtui.lab.cpio``) with the /init
program of ``svqtui.lab.guest_init``.

The result lives in $XDG_CACHE_HOME/svqtui/guest/<key>/ (default
~/.cache/svqtui/guest/), where the key hashes every input byte (kernel, modules,
busybox, init script, builder version); an unchanged input set is a cache hit.
A build goes to a temporary directory renamed into place, so concurrent builders
and interrupted builds never leave a half-written image.

Run ``python -m svqtui.lab.guest_image`` (or scripts/build-guest) to build it and
print where it is.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from svqtui.lab.cpio import CpioWriter
from svqtui.lab.errors import GuestImageError
from svqtui.lab.guest_init import INIT_SCRIPT, MODULE_DIR, MODULE_LIST_PATH

BUILDER_VERSION = "1"  # bump when the image layout changes without an input changing
KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# their dependencies (virtio_net: net_failover, failover) come from modules.dep
TOP_MODULES = ("virtio_pci", "virtio_blk", "virtio_net")
KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initramfs.cpio"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class GuestInputs:
    """The host files a guest image is built from."""

    kernel_version: str
    kernel: Path
    modules: tuple[Path, ...]  # load order: dependencies first
    busybox: Path


@dataclass(frozen=True, slots=True)
class GuestImage:
    """A built guest: pass ``kernel`` to -kernel and ``initrd`` to -initrd."""

    key: str
    directory: Path
    kernel: Path
    initrd: Path
    kernel_version: str
    modules: tuple[str, ...]  # module file names inside the initramfs, load order
    cache_hit: bool


def cache_root() -> Path:
    """$XDG_CACHE_HOME/svqtui/guest, or ~/.cache/svqtui/guest."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "svqtui" / "guest"


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _resolve_modules(moddir: Path, top: tuple[str, ...]) -> tuple[Path, ...]:
    dep_file = moddir / "modules.dep"
    try:
        text = dep_file.read_text()
    except OSError as exc:
        raise GuestImageError(
            f"cannot read {dep_file} ({exc.strerror}): reinstall the kernel package "
            f"(apt-get install --reinstall {KERNEL_PACKAGE})"
        ) from exc
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        target, sep, rest = line.partition(":")
        if sep:
            deps[_module_name(target)] = (target, [_module_name(d) for d in rest.split()])
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in deps:
            raise GuestImageError(
                f"kernel module {name} not in {dep_file}: this kernel lacks it as a module; "
                f"use a Debian kernel that has it (apt-get install {KERNEL_PACKAGE})"
            )
        for dep in deps[name][1]:
            visit(dep)
        order.append(name)

    for name in top:
        visit(name)
    return tuple(moddir / deps[name][0] for name in order)


def _find_kernel(boot: Path, modules_root: Path, version: str | None) -> tuple[str, Path]:
    if version is not None:
        candidates = [version]
    else:
        found = sorted(
            (p.name.removeprefix("vmlinuz-") for p in boot.glob("vmlinuz-*-cloud-amd64")),
            key=_version_key,
            reverse=True,
        )
        candidates = [v for v in found if (modules_root / v).is_dir()]
    if not candidates:
        raise GuestImageError(
            f"no guest kernel: no {boot}/vmlinuz-*-cloud-amd64 with modules in {modules_root}; "
            f"install it: apt-get install {KERNEL_PACKAGE}"
        )
    ver = candidates[0]
    kernel = boot / f"vmlinuz-{ver}"
    if not kernel.is_file() or not (modules_root / ver).is_dir():
        raise GuestImageError(
            f"kernel {ver} is not installed ({kernel} or {modules_root / ver} missing); "
            f"install it: apt-get install {KERNEL_PACKAGE}"
        )
    if not os.access(kernel, os.R_OK):
        raise GuestImageError(
            f"{kernel} is not readable by this user: run once as root, or chmod o+r {kernel}"
        )
    return ver, kernel


def _version_key(version: str) -> list[tuple[int, str]]:
    parts: list[tuple[int, str]] = []
    for piece in version.replace("-", ".").split("."):
        parts.append((int(piece), "") if piece.isdigit() else (-1, piece))
    return parts


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF64 executable without a PT_INTERP (dynamic loader)."""
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff = struct.unpack_from("<Q", head, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def _check_busybox(busybox: Path) -> Path:
    if not busybox.is_file():
        raise GuestImageError(
            f"busybox not found at {busybox}: install it: apt-get install {BUSYBOX_PACKAGE}"
        )
    if not _is_static_elf(busybox):
        raise GuestImageError(
            f"{busybox} is not a static x86-64 busybox, the guest cannot run it: "
            f"install it: apt-get install {BUSYBOX_PACKAGE}"
        )
    return busybox


def find_inputs(
    kernel_version: str | None = None,
    *,
    boot: Path = Path("/boot"),
    modules_root: Path = Path("/lib/modules"),
    busybox: Path = Path("/bin/busybox"),
) -> GuestInputs:
    """Locate the kernel (newest cloud kernel unless ``kernel_version``), its virtio
    modules in load order, and the static busybox; ``GuestImageError`` if missing."""
    ver, kernel = _find_kernel(boot, modules_root, kernel_version)
    modules = _resolve_modules(modules_root / ver, TOP_MODULES)
    return GuestInputs(ver, kernel, modules, _check_busybox(busybox))


def _read_module(path: Path) -> bytes:
    """The module's ELF bytes, decompressed (busybox insmod takes plain .ko files)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GuestImageError(
            f"cannot read kernel module {path} ({exc.strerror}): reinstall the kernel package "
            f"(apt-get install --reinstall {KERNEL_PACKAGE})"
        ) from exc
    if path.name.endswith(".ko"):
        return raw
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise GuestImageError(
                f"{path} is zstd-compressed and no zstd program was found: "
                "install it: apt-get install zstd"
            )
        return subprocess.run([zstd, "-dcq"], input=raw, capture_output=True, check=True).stdout
    raise GuestImageError(f"kernel module {path} has an unknown compression")


def image_key(inputs: GuestInputs) -> str:
    """A hash of every input byte (and the builder version): the cache key."""
    h = hashlib.sha256()
    h.update(f"svqtui-guest/{BUILDER_VERSION}\0{inputs.kernel_version}\0".encode())
    h.update(INIT_SCRIPT.encode())
    for path in (inputs.kernel, inputs.busybox, *inputs.modules):
        h.update(f"\0{path.name}\0".encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def _initramfs(inputs: GuestInputs) -> tuple[bytes, tuple[str, ...]]:
    cpio = CpioWriter()
    for d in ("bin", "dev", "etc", "lib", MODULE_DIR, "proc", "sys", "tmp"):
        cpio.add_dir(d)
    cpio.add_chardev("dev/console", 5, 1)  # the kernel opens it for /init's stdio
    cpio.add_chardev("dev/null", 1, 3, 0o666)
    cpio.add_file("bin/busybox", inputs.busybox.read_bytes(), 0o755)
    cpio.add_symlink("bin/sh", "busybox")
    names: list[str] = []
    for path in inputs.modules:
        name = _module_name(path.name) + ".ko"
        cpio.add_file(f"{MODULE_DIR}/{name}", _read_module(path))
        names.append(name)
    cpio.add_file(MODULE_LIST_PATH, "".join(n + "\n" for n in names).encode())
    cpio.add_file("init", INIT_SCRIPT.encode(), 0o755)
    return cpio.finish(), tuple(names)


def _load(directory: Path, key: str, cache_hit: bool) -> GuestImage:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    return GuestImage(
        key=key,
        directory=directory,
        kernel=directory / KERNEL_NAME,
        initrd=directory / INITRD_NAME,
        kernel_version=str(manifest["kernel_version"]),
        modules=tuple(str(m) for m in manifest["modules"]),
        cache_hit=cache_hit,
    )


def build_guest_image(
    inputs: GuestInputs | None = None, *, cache_dir: Path | None = None, force: bool = False
) -> GuestImage:
    """Return the cached guest image for ``inputs`` (default: ``find_inputs()``),
    building it first if the cache has none (or ``force``)."""
    inputs = inputs or find_inputs()
    root = cache_dir or cache_root()
    key = image_key(inputs)
    final = root / key
    complete = all((final / n).is_file() for n in (MANIFEST_NAME, KERNEL_NAME, INITRD_NAME))
    if complete and not force:
        return _load(final, key, cache_hit=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    except OSError as exc:
        raise GuestImageError(
            f"cannot create the guest image cache in {root} ({exc.strerror}): "
            "set XDG_CACHE_HOME to a writable directory"
        ) from exc
    try:
        initrd, modules = _initramfs(inputs)
        (tmp / INITRD_NAME).write_bytes(initrd)
        shutil.copyfile(inputs.kernel, tmp / KERNEL_NAME)
        manifest = {
            "key": key,
            "kernel_version": inputs.kernel_version,
            "kernel": str(inputs.kernel),
            "busybox": str(inputs.busybox),
            "modules": list(modules),
            "module_sources": [str(m) for m in inputs.modules],
            "builder_version": BUILDER_VERSION,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():  # forced, or damaged (a file was deleted from the cache)
            shutil.rmtree(final)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / MANIFEST_NAME).is_file():
                raise
            # another builder won the race with the same inputs: use its image
    except OSError as exc:
        raise GuestImageError(
            f"cannot write the guest image to {root} ({exc.strerror}): "
            "check free space and permissions, or set XDG_CACHE_HOME"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(final, key, cache_hit=False)


def main(argv: list[str] | None = None) -> int:
    """CLI: build (or find) the guest image and print its paths."""
    parser = argparse.ArgumentParser(
        prog="build-guest",
        description="Build the svqtui lab guest (Debian kernel + busybox initramfs), cached.",
    )
    parser.add_argument("--kernel-version", help="e.g. 6.1.0-26-cloud-amd64 (default: newest)")
    parser.add_argument("--cache-dir", type=Path, help=f"default: {cache_root()}")
    parser.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    args = parser.parse_args(argv)
    try:
        image = build_guest_image(
            find_inputs(args.kernel_version), cache_dir=args.cache_dir, force=args.force
        )
    except GuestImageError as exc:
        print(f"build-guest: {exc}", file=sys.stderr)
        return 2
    print(f"{'cached' if image.cache_hit else 'built'} {image.key} ({image.kernel_version})")
    print(f"kernel {image.kernel}")
    print(f"initrd {image.initrd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
