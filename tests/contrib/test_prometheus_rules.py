"""contrib/prometheus/svqtui.rules.yml: valid for ``promtool check rules``,
passing its unit tests (``promtool test rules``), and naming only metrics the
exporter exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.contrib.exported import exported_names

RULES_DIR = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
RULES = RULES_DIR / "svqtui.rules.yml"
RULE_TESTS = RULES_DIR / "svqtui.rules.test.yml"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for each target


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path is not None, "promtool not found: apt-get install prometheus"
    return subprocess.run(
        [path, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.prometheus
def test_promtool_checks_the_rules() -> None:
    """``promtool check rules`` accepts the shipped rules file."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_pass() -> None:
    """The alerts fire (and stay quiet) as svqtui.rules.test.yml expects."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rules file with a longer ``for:`` fails the shipped unit tests (they
    pin the timing, not only the expressions)."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    (tmp_path / RULES.name).write_text(RULES.read_text().replace("for: 1m", "for: 5m"))
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "SvqtuiQueueStuck" in result.stdout + result.stderr


def test_every_alert_needs_only_exported_metrics() -> None:
    """Each metric name in an alert expression is one the exporter exports
    (or Prometheus' own ``up``), and each alert has a summary and a severity."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    names = exported_names()
    alerts = [rule for group in groups for rule in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "SvqtuiQueueStuck",
        "SvqtuiEngineHeartbeatStale",
        "SvqtuiSourceDown",
        "SvqtuiShadowLeftBehind",
    }
    for alert in alerts:
        used = set(re.findall(r"\b(svqtui_[a-z_]+|up)\b", alert["expr"]))
        assert used, alert["alert"]
        assert used <= names | PROMETHEUS_OWN, (alert["alert"], used - names)
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"]
