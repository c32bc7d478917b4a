"""The device tree (left pane): all VMs, each VM, each VM's devices.

Moving the cursor picks the scope of the queue table. The tree is rebuilt
only when the set of VMs and devices changes; otherwise only labels whose
text changed (shadow, stuck, connection) are rewritten.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from svqtui.console.selection import Scope
from svqtui.model import DeviceView, Snapshot, VMView

Structure = tuple[tuple[str, tuple[str, ...]], ...]


def vm_label(vm: VMView) -> Text:
    label = Text(vm.name, style="bold")
    if vm.label:
        label.append(f" {vm.label}", style="italic dim")
    if not vm.connected:
        label.append(" DOWN", style="bold red")
    if vm.migration is not None:
        label.append(f" migr:{vm.migration.status}", style="yellow")
    return label


def device_label(dev: DeviceView, stuck: int) -> Text:
    label = Text(dev.name)
    if dev.shadow:
        label.append(" S", style="bold cyan")
    if not dev.connected:
        label.append(" DOWN", style="bold red")
    if stuck:
        label.append(f" !{stuck}", style="bold red")
    return label


def structure(snap: Snapshot) -> Structure:
    return tuple((vm.key, tuple(d.key for d in vm.devices)) for vm in snap.vms)


class DeviceTree(Tree[Scope]):
    """VMs and their devices; posts ``ScopeChanged`` when the cursor moves."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("right", "to_table", "To table", show=False)]

    class ScopeChanged(Message):
        def __init__(self, scope: Scope) -> None:
            super().__init__()
            self.scope = scope

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("all VMs", data=Scope.all(), id=id)
        self.show_root = True
        self.guide_depth = 2
        self._structure: Structure = ()
        self._scope_nodes: dict[str, TreeNode[Scope]] = {}
        self._labels: dict[str, tuple[object, ...]] = {}  # what each label says
        self.root.expand()

    def update_from(self, snap: Snapshot) -> None:
        """Follow the snapshot's VMs and devices."""
        shape = structure(snap)
        if shape != self._structure:
            self._rebuild(snap)
            self._structure = shape
        stuck: dict[str, int] = {}
        for row in snap.rows.values():
            if row.stuck:
                stuck[row.device_key] = stuck.get(row.device_key, 0) + 1
        labels = self._labels
        for vm in snap.vms:
            migration = vm.migration.status if vm.migration is not None else None
            said: tuple[object, ...] = (vm.name, vm.label, vm.connected, migration)
            if labels.get(vm.key) != said:  # a label is made only when what it says changed
                labels[vm.key] = said
                self._scope_nodes[vm.key].set_label(vm_label(vm))
            for dev in vm.devices:
                count = stuck.get(dev.key, 0)
                said = (dev.name, dev.shadow, dev.connected, count)
                if labels.get(dev.key) != said:
                    labels[dev.key] = said
                    self._scope_nodes[dev.key].set_label(device_label(dev, count))

    def _rebuild(self, snap: Snapshot) -> None:
        current = self.cursor_node.data if self.cursor_node is not None else None
        self.root.remove_children()
        self._scope_nodes.clear()
        self._labels.clear()
        for vm in snap.vms:
            vm_node = self.root.add(vm_label(vm), data=Scope.vm(vm.key), expand=True)
            self._scope_nodes[vm.key] = vm_node
            for dev in vm.devices:
                self._scope_nodes[dev.key] = vm_node.add_leaf(dev.name, data=Scope.device(dev.key))
        _ = self.last_line  # lay the new nodes out, so the cursor can find them
        if current is not None and current.key in self._scope_nodes:
            self.move_cursor(self._scope_nodes[current.key])
        elif current is not None and current.key is not None:
            self.move_cursor(self.root)  # what was selected is gone: show all

    @property
    def scope(self) -> Scope:
        node = self.cursor_node
        return node.data if node is not None and node.data is not None else Scope.all()

    def select_scope(self, scope: Scope) -> None:
        node = self._scope_nodes.get(scope.key or "", self.root)
        _ = self.last_line
        self.move_cursor(node)

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Scope]) -> None:
        event.stop()
        self.post_message(self.ScopeChanged(self.scope))

    def action_to_table(self) -> None:
        self.screen.focus_next()
