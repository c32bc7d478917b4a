"""config.yaml validation: every mistake is one ConfigError naming file, line and key."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from svqtui.config import SHIPPED_DEFAULT, EngineConfig, find_config, load_config, parse_config
from svqtui.errors import ConfigError
from svqtui.sources.demo.settings import PLUGIN as DEMO
from svqtui.sources.demo.settings import demo_active
from svqtui.sources.plugin import SourcePlugin
from svqtui.sources.qmp.settings import PLUGIN as QMP
from svqtui.sources.registry import SOURCE_PLUGINS
from svqtui.sources.vhost_user.settings import PLUGIN as VHOST_USER


def test_shipped_default_is_valid_and_runs_the_demo() -> None:
    """The shipped config.yaml parses and, naming no device, turns the demo on."""
    config = load_config(str(SHIPPED_DEFAULT))
    assert demo_active(config)
    assert config.section(VHOST_USER) == ()
    assert config.refresh_s == 1.0


def test_repository_config_is_the_shipped_default() -> None:
    """./config.yaml in the repository is the shipped default (one file, not two)."""
    repo_config = Path(__file__).resolve().parent.parent / "config.yaml"
    assert repo_config.resolve() == SHIPPED_DEFAULT


def test_full_config_round_trip() -> None:
    """Every documented key is accepted and typed."""
    config = parse_config(
        textwrap.dedent(
            """\
            refresh: 0.5
            history: 30
            stuck: {after: 2, in_flight: false, kicks_without_calls: on}
            demo: {enabled: false, seed: 42}
            engine: {max_queues: 128}
            control: {socket: /tmp/x.sock}
            devices:
              - name: blk0
                listen: /tmp/l.sock
                backend: /tmp/b.sock
                shadow: on
            qmp:
              sockets: [/tmp/q.sock, {path: /tmp/r.sock, name: vm2}]
              discover: false
              poll: 2
            """
        )
    )
    assert config.refresh_s == 0.5 and config.history == 30
    assert config.stuck.after_s == 2 and not config.stuck.in_flight
    assert config.stuck.kicks_without_calls
    assert config.section(DEMO).seed == 42 and not demo_active(config)
    assert config.max_queues == 128 and config.control_path == "/tmp/x.sock"
    device = config.section(VHOST_USER)[0]
    assert device.shadow and device.line == 8
    qmp = config.section(QMP)
    assert [s.path for s in qmp.sockets] == ["/tmp/q.sock", "/tmp/r.sock"]
    assert qmp.sockets[1].name == "vm2" and not qmp.discover


@pytest.mark.parametrize(
    ("listen", "expected", "loopback"),
    [
        ("off", None, None),
        ("null", None, None),
        ("127.0.0.1:9469", "127.0.0.1:9469", True),
        ("9469", "127.0.0.1:9469", True),  # a bare port stays on loopback
        ("':9469'", "127.0.0.1:9469", True),
        ("'[::1]:9469'", "[::1]:9469", True),
        ("0.0.0.0:9469", "0.0.0.0:9469", False),  # written out: the only way off loopback
        ("'[::]:9100'", "[::]:9100", False),
        ("hv1.example:80", "hv1.example:80", False),
    ],
)
def test_metrics_listen(listen: str, expected: str | None, loopback: bool | None) -> None:
    """metrics.listen is off by default; a bare port means loopback; any other
    address is taken only as written."""
    assert parse_config("refresh: 1\n").metrics is None
    metrics = parse_config(f"metrics:\n  listen: {listen}\n").metrics
    assert (str(metrics) if metrics else None) == expected
    assert (metrics.loopback if metrics else None) == loopback


def test_demo_auto_turns_off_when_devices_are_configured() -> None:
    """demo: auto means the demo runs only when nothing else is configured."""
    config = parse_config("devices:\n  - {name: a, listen: /l, backend: /b}\n")
    assert not demo_active(config)
    assert demo_active(parse_config("demo: {enabled: true}\ndevices: []\n"))


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("refresh: fast\n", 1, "refresh", "expected a number"),
        ("refresh: 0\n", 1, "refresh", "between"),
        ("history: 2.5\n", 1, "history", "whole number"),
        ("\n\ndemo:\n  sed: 3\n", 4, "demo.sed", "did you mean 'seed'"),
        ("colour: red\n", 1, "colour", "unknown key"),
        ("stuck: [1, 2]\n", 1, "stuck", "expected a mapping"),
        ("stuck:\n  after: -1\n", 2, "stuck.after", "between"),
        ("stuck:\n  in_flight: maybe\n", 2, "stuck.in_flight", "true/false"),
        ("devices:\n  - name: a\n    listen: /l\n", 2, "devices[0].backend", "missing"),
        ("devices: {name: a}\n", 1, "devices", "expected a list"),
        (
            "devices:\n"
            "  - {name: a, listen: /l, backend: /b}\n"
            "  - {name: a, listen: /m, backend: /b}\n",
            3,
            "devices[1].name",
            "used by another device",
        ),
        ("devices:\n  - {name: a, listen: /s, backend: /s}\n", 2, "devices[0].listen", "different"),
        ("qmp:\n  sockets:\n    - {name: x}\n", 3, "qmp.sockets[0].path", "missing"),
        ("qmp:\n  poll: [1]\n", 2, "qmp.poll", "single value"),
        ("engine:\n  max_queues: 0\n", 2, "engine.max_queues", "between"),
        ("refresh: 1\nrefresh: 2\n", 2, "refresh", "duplicate"),
        ("metrics:\n  listen: 127.0.0.1:99999\n", 2, "metrics.listen", "port from 0 to 65535"),
        ("metrics:\n  listen: '::1:9469'\n", 2, "metrics.listen", "in brackets: [::1]:9469"),
        ("metrics:\n  listen: [1]\n", 2, "metrics.listen", "single value"),
        ("metrics:\n  lisen: 9469\n", 2, "metrics.lisen", "did you mean 'listen'"),
    ],
)
def test_bad_values_name_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    """A wrong type, bad value or unknown key gives file:line: key: reason."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml")
    err = caught.value
    assert (err.path, err.line, err.key) == ("cfg.yaml", line, key)
    assert words in err.message
    assert str(err).startswith(f"cfg.yaml:{line}: {key}: ")
    assert "\n" not in str(err)


def test_broken_yaml_names_the_line() -> None:
    """Syntax errors are reported with their line, as one line of text."""
    with pytest.raises(ConfigError) as caught:
        parse_config("refresh: 1\ndemo: [\n", "cfg.yaml")
    assert caught.value.line is not None and caught.value.line >= 2
    assert "not valid YAML" in str(caught.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    """-c with a missing file is a ConfigError naming the path, not a crash."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.yaml"))


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-c wins; then ./config.yaml; then the user's config dir; then the default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config(None) == SHIPPED_DEFAULT
    user = tmp_path / "xdg" / "svqtui" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("refresh: 2\n")
    assert find_config(None) == user
    (tmp_path / "config.yaml").write_text("refresh: 3\n")
    assert find_config(None) == Path("config.yaml")
    assert load_config(None).refresh_s == 3
    assert find_config("/x.yaml") == Path("/x.yaml")


def test_empty_file_gives_defaults() -> None:
    """An empty config file means every default."""
    assert demo_active(parse_config("", "empty.yaml"))


@pytest.mark.parametrize("plugin", SOURCE_PLUGINS, ids=lambda p: p.section)
def test_each_source_owns_its_block_of_the_shipped_config(plugin: SourcePlugin[object]) -> None:
    """Every source plug-in's documented block stands verbatim in the shipped
    config.yaml, and parses to that plug-in's defaults."""
    shipped = SHIPPED_DEFAULT.read_text()
    assert plugin.shipped in shipped
    config = parse_config(plugin.shipped, "block.yaml")
    assert config.section(plugin) == plugin.default


def test_an_unknown_section_names_the_known_ones() -> None:
    """A misspelt source section is one line with a suggestion, not ignored."""
    with pytest.raises(ConfigError) as err:
        parse_config("qpm: {discover: false}\n", "c.yaml")
    assert str(err.value).startswith("c.yaml:1: qpm: unknown key (did you mean 'qmp'?)")


def test_engine_polling_keys() -> None:
    """engine: polling, poll_us, poll_cpu_budget and cpu are read and typed;
    `off` is the mode, not YAML's false; left out, they default to adaptive,
    200 us, 0.2 of a core and no pinning."""
    cpu = min(os.sched_getaffinity(0))
    config = parse_config(
        f"engine:\n  polling: off\n  poll_us: 50\n  poll_cpu_budget: 0.05\n  cpu: {cpu}\n"
    )
    assert config.engine == EngineConfig("off", 50, 0.05, cpu)
    assert parse_config("engine: {polling: Fixed}\n").engine.polling == "fixed"
    assert parse_config("engine: {max_queues: 8}\n").engine == EngineConfig()
    assert parse_config("refresh: 1\n").engine == EngineConfig("adaptive", 200, 0.2, None)
    assert load_config(str(SHIPPED_DEFAULT)).engine == EngineConfig()


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("engine:\n  polling: busy\n", "engine.polling", "expected off, adaptive or fixed"),
        ("engine:\n  polling: [off]\n", "engine.polling", "single value"),
        ("engine:\n  poll_us: 0\n", "engine.poll_us", "between 1 and 100000"),
        ("engine:\n  poll_us: 2.5\n", "engine.poll_us", "whole number"),
        ("engine:\n  poll_cpu_budget: 1.5\n", "engine.poll_cpu_budget", "between 0 and 1"),
        ("engine:\n  poll_cpu_budget: lots\n", "engine.poll_cpu_budget", "expected a number"),
        ("engine:\n  cpu: -1\n", "engine.cpu", "between 0 and 4095"),
        ("engine:\n  cpu: 4095\n", "engine.cpu", "not available to svqtui"),
        ("engine:\n  poll_usec: 10\n", "engine.poll_usec", "did you mean 'poll_us'"),
    ],
)
def test_bad_engine_values_name_line_and_key(text: str, key: str, words: str) -> None:
    """Each bad engine polling value is one ConfigError at line 2 naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml")
    assert str(caught.value).startswith(f"cfg.yaml:2: {key}: ")
    assert words in caught.value.message
