"""How a libvirt domain and its devices are worded (pure: no libvirt).

Job statistics below have the keys libvirt's ``jobStats()`` and the
JOB_COMPLETED event use (virDomainJobInfo typed parameters)."""

from __future__ import annotations

from svqtui.model import DeviceRole, VMRole
from svqtui.sources.libvirt import views
from svqtui.sources.libvirt.domxml import DomainXML, XmlDevice
from svqtui.sources.libvirt.events import is_migration, job_summary, lifecycle_text

DISK = XmlDevice(
    alias="virtio-disk0",
    kind="vhost-user-blk",
    element="disk",
    target="vda",
    backend="vhost-user",
    socket_path="/run/svqtui/blk0.sock",
    socket_mode="client",
    queues=2,
)
PLAIN = XmlDevice(alias="virtio-disk1", kind="virtio-blk", element="disk", target="vdb")
DOMAIN = DomainXML("web1", "u-1", 4, (DISK, PLAIN), True)
MIGRATING = {
    "type": 1,
    "operation": 5,
    "time_elapsed": 2300,
    "data_total": 1 << 30,
    "data_processed": 300 << 20,
    "data_remaining": 700 << 20,
    "memory_iteration": 2,
}


def test_a_vhost_user_device_describes_its_socket_for_the_join() -> None:
    """A vhost-user disk is a DESCRIBES view with its socket path, libvirt's
    alias and kind; with qmp off it has no queues and says what qmp: true
    would add and that it taints."""
    view = views.device_view(DOMAIN, DISK, active=True, qmp=False, state=None)
    assert (view.key, view.name, view.kind) == ("libvirt:web1/virtio-disk0", "virtio-disk0",
                                                "vhost-user-blk")  # fmt: skip
    assert view.role is DeviceRole.DESCRIBES
    assert view.socket_path == "/run/svqtui/blk0.sock"
    assert view.queues == ()
    assert views.NOTE_QMP_OFF in view.notes and "TAINTS" in views.NOTE_QMP_OFF
    assert "2 queues (domain XML)" in view.notes
    assert view.shadow_note == views.SHADOW_NOTE_VHOST_USER


def test_queue_counts_say_where_they_come_from() -> None:
    """An XML queue count is quoted as such; without one, a virtio-blk disk
    gets QEMU's default of one queue per vCPU."""
    assert views.queue_text(DISK, 4) == "2 queues (domain XML)"
    assert views.queue_text(PLAIN, 4) == "queues: QEMU's default, one per vCPU (4)"


def test_the_vm_row_manages_its_pid_and_reports_the_taint() -> None:
    """The VM view is keyed by UUID, MANAGES its pid, and its status carries
    libvirt's taint messages (or says there are none)."""
    vm = views.vm_view(
        DOMAIN, (), state=1, status=views.state_text(1, ("custom-monitor",), True), pid=7,
        cpu=None, rss=None, migration=None,
    )  # fmt: skip
    assert (vm.key, vm.role, vm.pid, vm.connected) == ("libvirt:u-1", VMRole.MANAGES, 7, True)
    assert vm.status == "running; tainted: custom-monitor"
    assert views.state_text(3, (), False) == "paused; not tainted"
    assert not views.vm_view(
        DOMAIN, (), state=5, status="", pid=None, cpu=None, rss=None, migration=None
    ).connected


def test_migration_progress_from_job_statistics() -> None:
    """A running outgoing migration's jobStats become the model's migration
    record; the completed job's summary line names the operation and figures."""
    assert is_migration(MIGRATING) and not is_migration({"type": 1, "operation": 2})
    mig = views.migration_view(MIGRATING, "active")
    assert (mig.status, mig.passes, mig.total_time_ms) == ("active", 2, 2300)
    assert (mig.transferred, mig.remaining, mig.total) == (300 << 20, 700 << 20, 1 << 30)
    done = {**MIGRATING, "type": 3, "downtime": 40}
    assert job_summary(done) == "outgoing migration, 2300 ms, 300.0 MiB moved, downtime 40 ms"


def test_lifecycle_events_in_words() -> None:
    """libvirt's lifecycle codes and details read as words."""
    assert lifecycle_text(3, 0) == "suspended (paused)"
    assert lifecycle_text(5, 3) == "stopped (migrated)"
    assert lifecycle_text(42, 0) == "event 42"
