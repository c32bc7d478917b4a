"""The device tree follows snapshots: rebuilt only when VMs or devices come
or go, labels rewritten only when they change, the selection kept."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult

from svqtui.console.selection import Scope
from svqtui.widgets.device_tree import DeviceTree
from tests.support.console import synthetic_snapshot


class Host(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.scopes: list[Scope] = []

    def compose(self) -> ComposeResult:
        yield DeviceTree(id="tree")

    def on_device_tree_scope_changed(self, event: DeviceTree.ScopeChanged) -> None:
        self.scopes.append(event.scope)


async def test_same_devices_keep_their_nodes() -> None:
    """A new snapshot with the same devices keeps every node object; a new
    device rebuilds the tree and keeps the selected device selected."""
    app = Host()
    async with app.run_test(size=(40, 30)) as pilot:
        tree = app.query_one(DeviceTree)
        tree.update_from(synthetic_snapshot(devices=4, queues=1, tick=1))
        await pilot.pause()
        nodes = dict(tree._scope_nodes)
        tree.update_from(synthetic_snapshot(devices=4, queues=1, tick=2))
        assert tree._scope_nodes == nodes
        assert all(tree._scope_nodes[k] is n for k, n in nodes.items())
        tree.select_scope(Scope.device("syn:vm1/dev3"))
        await pilot.pause()
        tree.update_from(synthetic_snapshot(devices=6, queues=1, tick=3))
        await pilot.pause()
        assert "syn:vm2/dev5" in tree._scope_nodes
        assert tree.scope == Scope.device("syn:vm1/dev3")


async def test_cursor_moves_post_scopes() -> None:
    """Moving the cursor down walks all VMs -> vm0 -> dev0 as scopes."""
    app = Host()
    async with app.run_test(size=(40, 30)) as pilot:
        tree = app.query_one(DeviceTree)
        tree.update_from(synthetic_snapshot(devices=2, queues=1))
        tree.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        assert app.scopes[-2:] == [Scope.vm("syn:vm0"), Scope.device("syn:vm0/dev0")]


async def test_labels_show_shadow_stuck_and_down() -> None:
    """A device label says S (shadow), !N (stuck queues) and DOWN in words."""
    app = Host()
    async with app.run_test(size=(40, 30)):
        tree = app.query_one(DeviceTree)
        snap = synthetic_snapshot(devices=2, queues=3, stuck=frozenset({"syn:vm0/dev1#0"}))
        tree.update_from(snap)
        assert str(tree._scope_nodes["syn:vm0/dev1"].label) == "dev1 S !1"
        down = dataclasses.replace(snap.vms[0].devices[0], connected=False, shadow=False)
        vm = dataclasses.replace(snap.vms[0], devices=(down, snap.vms[0].devices[1]))
        tree.update_from(dataclasses.replace(snap, vms=(vm,)))
        assert str(tree._scope_nodes["syn:vm0/dev0"].label) == "dev0 DOWN"
