"""The guest program's parameters and data pattern (svqtui.lab.guest_init)."""

from __future__ import annotations

import pytest

from svqtui.lab.guest_init import (
    INIT_SCRIPT,
    NET_GUEST_IP,
    NET_PEER_IP,
    NET_PEER_MAC,
    GuestParams,
    block_pattern,
)


def test_kernel_args_carry_every_parameter_the_init_script_reads() -> None:
    """Each GuestParams field becomes an svq.<name>= argument that /init parses."""
    args = GuestParams(delay_ms=5, blocks=2, slots=3, iters=7, irq_every=4, hb_ms=250).kernel_args()
    assert args.split() == [
        "svq.delay_ms=5",
        "svq.blocks=2",
        "svq.slots=3",
        "svq.iters=7",
        "svq.irq_every=4",
        "svq.hb_ms=250",
        "svq.dev=vda",
        "svq.mode=blk",
        "svq.ping_ms=10",
        "svq.net_every=10",
    ]
    for arg in args.split():
        assert f"{arg.split('=')[0]}=*)" in INIT_SCRIPT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"blocks": 0},
        {"slots": 0},
        {"irq_every": 0},
        {"delay_ms": -1},
        {"dev": "vda x"},
        {"mode": "scsi"},
        {"ping_ms": 0},
        {"net_every": 0},
    ],
)
def test_invalid_params_are_refused(kwargs: dict[str, object]) -> None:
    """Values the guest would reject (or that would break the command line) are refused."""
    with pytest.raises(ValueError):
        GuestParams(**kwargs)  # type: ignore[arg-type]


def test_block_pattern_has_one_tagged_line_per_sector() -> None:
    """The pattern is blocks*4 KiB of 512-byte lines naming iteration, slot and sector."""
    data = block_pattern(12, 3, 2)
    assert len(data) == 2 * 4096
    sectors = [data[i : i + 512] for i in range(0, len(data), 512)]
    assert sectors[0].startswith(b"svq iter=12 slot=3 sector=0 ") and sectors[0].endswith(b" \n")
    assert sectors[15].startswith(b"svq iter=12 slot=3 sector=15 ")
    assert block_pattern(13, 3, 2) != data


def test_net_mode_addresses_are_filled_in() -> None:
    """The net mode's addresses replace every placeholder of the init template."""
    assert "@GUEST_IP@" not in INIT_SCRIPT and "@PEER_" not in INIT_SCRIPT
    assert f'ifconfig "$DEV" {NET_GUEST_IP} ' in INIT_SCRIPT
    assert f"-s {NET_PEER_IP} {NET_PEER_MAC}" in INIT_SCRIPT
