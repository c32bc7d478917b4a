"""Building and caching the guest image (svqtui.lab.guest_image) from the host's packages."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from svqtui.lab import guest_image
from svqtui.lab.cpio import read_cpio
from svqtui.lab.errors import GuestImageError
from svqtui.lab.guest_image import build_guest_image, find_inputs, image_key
from svqtui.lab.guest_init import INIT_SCRIPT

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.qemu  # builds the guest image from the host's kernel and busybox
def test_build_then_cache_hit(tmp_path: Path) -> None:
    """A first build writes the image; a second one with the same inputs is a cache
    hit that returns the same files untouched; a damaged entry is rebuilt."""
    first = build_guest_image(cache_dir=tmp_path)
    assert not first.cache_hit
    assert first.kernel.stat().st_size > 1_000_000
    mtime = first.initrd.stat().st_mtime_ns
    second = build_guest_image(cache_dir=tmp_path)
    assert second.cache_hit
    assert (second.key, second.initrd, second.kernel) == (first.key, first.initrd, first.kernel)
    assert second.initrd.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.key]  # no temporary leftovers
    first.initrd.unlink()  # a damaged cache entry is rebuilt, not returned
    third = build_guest_image(cache_dir=tmp_path)
    assert not third.cache_hit and third.initrd.is_file()


@pytest.mark.qemu  # builds the guest image from the host's kernel and busybox
def test_initramfs_has_init_busybox_console_and_modules_in_load_order(tmp_path: Path) -> None:
    """The cpio holds /init (the guest program), a static busybox, /dev/console, and
    every virtio module, uncompressed, listed with dependencies before dependents."""
    inputs = find_inputs()
    image = build_guest_image(inputs, cache_dir=tmp_path)
    entries = {e.name: e for e in read_cpio(image.initrd.read_bytes())}
    assert entries["init"].data.decode() == INIT_SCRIPT
    assert stat.S_IMODE(entries["init"].mode) & 0o111
    assert entries["bin/busybox"].data == inputs.busybox.read_bytes()
    assert (entries["dev/console"].rdev_major, entries["dev/console"].rdev_minor) == (5, 1)
    order = entries["etc/svq-modules"].data.decode().split()
    assert order == list(image.modules)
    assert {"virtio_pci.ko", "virtio_blk.ko", "virtio.ko", "virtio_ring.ko"} <= set(order)
    # every module comes after all of its dependencies, as the kernel's modules.dep says
    dep_text = (Path("/lib/modules") / inputs.kernel_version / "modules.dep").read_text()
    deps = {
        Path(target).name.split(".ko")[0] + ".ko": [
            Path(d).name.split(".ko")[0] + ".ko" for d in rest.split()
        ]
        for target, _, rest in (line.partition(":") for line in dep_text.splitlines())
    }
    for i, name in enumerate(order):
        assert set(deps[name]) <= set(order[:i]), f"{name} loaded before its dependencies"
    for name in order:
        assert entries[f"lib/modules/{name}"].data[:4] == b"\x7fELF"  # decompressed


@pytest.mark.qemu  # builds the guest image from the host's kernel and busybox
def test_changed_input_changes_key_and_rebuilds(tmp_path: Path) -> None:
    """A different busybox binary gives a different key, so the image is rebuilt."""
    inputs = find_inputs()
    other_busybox = tmp_path / "busybox"
    shutil.copyfile(inputs.busybox, other_busybox)
    with other_busybox.open("ab") as f:
        f.write(b"\0")
    changed = find_inputs(inputs.kernel_version, busybox=other_busybox)
    assert image_key(changed) != image_key(inputs)
    cache = tmp_path / "cache"
    a = build_guest_image(inputs, cache_dir=cache)
    b = build_guest_image(changed, cache_dir=cache)
    assert not b.cache_hit and b.key != a.key and b.directory != a.directory


def test_missing_busybox_names_the_package(tmp_path: Path) -> None:
    """No busybox: one error naming the apt package busybox-static."""
    with pytest.raises(GuestImageError, match=r"apt-get install busybox-static"):
        find_inputs(busybox=tmp_path / "busybox")


def test_dynamic_busybox_is_refused(tmp_path: Path) -> None:
    """A dynamically linked binary cannot run in the initramfs: refused, naming
    busybox-static (the dynamic ls stands in for Debian's dynamic busybox package)."""
    dynamic = Path(shutil.which("ls") or "/bin/ls").resolve()
    with pytest.raises(GuestImageError, match=r"not a static.*busybox-static"):
        find_inputs(busybox=dynamic)


def test_missing_kernel_names_the_package(tmp_path: Path) -> None:
    """No cloud kernel in /boot: one error naming linux-image-cloud-amd64."""
    with pytest.raises(GuestImageError, match=r"apt-get install linux-image-cloud-amd64"):
        find_inputs(boot=tmp_path)


def test_missing_module_is_reported(tmp_path: Path) -> None:
    """A kernel whose modules.dep lacks virtio_blk: the error names the module."""
    real = find_inputs()
    boot = tmp_path / "boot"
    mods = tmp_path / "modules" / real.kernel_version
    boot.mkdir()
    mods.mkdir(parents=True)
    (boot / real.kernel.name).symlink_to(real.kernel)
    (mods / "modules.dep").write_text("kernel/drivers/virtio/virtio_ring.ko:\n")
    with pytest.raises(GuestImageError, match="virtio_pci"):
        find_inputs(boot=boot, modules_root=tmp_path / "modules")


@pytest.mark.qemu  # builds the guest image from the host's kernel and busybox
def test_cli_builds_and_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build-guest`` prints where the image is; a failure is one line and exit 2."""
    assert guest_image.main(["--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("built ") and out[1].startswith("kernel ") and "initrd" in out[2]
    assert guest_image.main(["--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("cached ")
    assert guest_image.main(["--kernel-version", "0.0-nope", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("build-guest: ") and "apt-get install" in err


@pytest.mark.qemu  # builds the guest image from the host's kernel and busybox
def test_scripts_build_guest_runs(tmp_path: Path) -> None:
    """scripts/build-guest is a working wrapper around the builder."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-guest")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "svqtui" / "guest") in result.stdout
