"""The header above the queue table: what the selected scope is (all VMs, a
VM, or a device with its kind, status, shadow mode and notes). Device notes,
such as where guest masking happens for vhost-user, are always visible here."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from svqtui.console.selection import Scope, ScopeKind
from svqtui.model import DeviceView, QueueRow, Snapshot, VMView


def migration_text(vm: VMView) -> str:
    m = vm.migration
    if m is None:
        return ""
    parts = [f"migration {m.status}"]
    if m.total and m.remaining is not None:
        parts.append(f"{100 * (m.total - m.remaining) / m.total:.0f}% sent")
    if m.passes is not None:
        parts.append(f"pass {m.passes}")
    if m.downtime_ms is not None:
        parts.append(f"downtime {m.downtime_ms} ms")
    return ", ".join(parts)


def device_text(vm: VMView | None, dev: DeviceView) -> Text:
    out = Text()
    out.append(f"{vm.name}/" if vm else "", style="bold")
    out.append(dev.name, style="bold")
    out.append(f"  {dev.kind}  ")
    out.append(str(dev.source), style="italic dim")
    out.append("  shadow ")
    out.append("ON" if dev.shadow else "off", style="bold cyan" if dev.shadow else "dim")
    if dev.status:
        out.append(f"  {dev.status}", style="" if dev.connected else "bold red")
    for note in dev.notes:
        out.append(f"\nnote: {note}", style="italic")
    return out


def scope_text(snap: Snapshot, scope: Scope) -> Text:
    if scope.kind is ScopeKind.DEVICE:
        for vm in snap.vms:
            for dev in vm.devices:
                if dev.key == scope.key:
                    return device_text(vm, dev)
        return Text("device gone", style="bold red")
    if scope.kind is ScopeKind.VM:
        for vm in snap.vms:
            if vm.key == scope.key:
                out = Text(vm.name, style="bold")
                if vm.label:
                    out.append(f" ({vm.label})", style="italic dim")
                out.append(f"  {len(vm.devices)} device(s)")
                if vm.status:
                    out.append(f"  {vm.status}", style="" if vm.connected else "bold red")
                if vm.pid is not None:
                    out.append(f"  pid {vm.pid}")
                if vm.migration is not None:
                    out.append(f"\n{migration_text(vm)}", style="yellow")
                return out
        return Text("VM gone", style="bold red")
    n_dev = sum(len(vm.devices) for vm in snap.vms)
    shadowed = sum(1 for vm in snap.vms for d in vm.devices if d.shadow)
    return Text.assemble(
        ("all VMs", "bold"),
        f"  {len(snap.vms)} VMs, {n_dev} devices ({shadowed} shadowed), {len(snap.rows)} queues",
    )


def stuck_line(row: QueueRow) -> Text:
    """The selected queue's diagnosis (else its stuck reason), for terminals
    too narrow for the column."""
    return Text.assemble(
        ("STUCK", "bold reverse red"),
        f" {row.vm_name}/{row.device_name} #{row.view.index}: ",
        row.diagnosis or row.stuck or "",
    )


class DeviceHeader(Widget):
    """One to four lines about the selected scope (and a stuck selected queue)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()

    def show(self, snap: Snapshot, scope: Scope, selected: QueueRow | None = None) -> None:
        text = scope_text(snap, scope)
        if selected is not None and selected.stuck:
            text.append("\n")
            text.append_text(stuck_line(selected))
        if text == self._text and text.spans == self._text.spans:
            return
        resized = text.plain != self._text.plain  # its height may change: lay out again
        self._text = text
        self.refresh(layout=resized)

    def render(self) -> Text:
        return self._text

    @property
    def text(self) -> str:
        return self._text.plain
