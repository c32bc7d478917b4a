"""contrib/grafana/svqtui.json: a well-formed dashboard whose every query is
valid PromQL (checked by promtool) over metrics the exporter exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contrib.exported import exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "svqtui.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$vm": ".*", "$device": ".*"}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    doc = dashboard()
    found = [
        (f"panel {p['id']} ({p['title']}) {t['refId']}", t["expr"])
        for p in doc["panels"]
        for t in p.get("targets", [])
    ]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*), *\w+\)", var["query"]["query"])
            assert inner, var["name"]
            found.append((f"variable {var['name']}", inner.group(1)))
    return found


def test_the_dashboard_is_well_formed() -> None:
    """Valid JSON with a uid and title; unique panel ids; every non-row panel
    has at least one query; the variables the queries use are defined."""
    doc = dashboard()
    assert doc["uid"] and doc["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    defined = {f"${v['name']}" for v in doc["templating"]["list"]} | {"$__rate_interval"}
    used = {m for _, q in queries() for m in re.findall(r"\$\w+", q)}
    assert used <= defined, used - defined


def test_the_dashboard_shows_rates_stuck_and_masking() -> None:
    """Rates per VM, device and queue, and the stuck, masked and shadow states."""
    exprs = " ".join(q for _, q in queries())
    for needed in (
        "sum by (vm) (rate(svqtui_virtqueue_kicks_total",
        "sum by (vm, device) (rate(svqtui_virtqueue_calls_total",
        "rate(svqtui_virtqueue_kicks_total{",
        "svqtui_virtqueue_stuck",
        "svqtui_virtqueue_masked",
        "svqtui_virtqueue_pending",
        "svqtui_virtqueue_shadow",
    ):
        assert needed in exprs, needed


def test_every_query_names_exported_metrics() -> None:
    """Each metric a query names is one the exporter writes (a renamed metric
    fails here rather than as an empty panel)."""
    names = exported_names()
    for where, query in queries():
        used = set(re.findall(r"\bsvqtui_[a-z_]+\b", query))
        assert used, where
        assert used <= names, (where, used - names)


@pytest.mark.prometheus
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """With Grafana's variables filled in, promtool accepts every query (as
    recording rules: the one promtool check that parses arbitrary PromQL)."""
    rules = []
    for i, (_, query) in enumerate(queries()):
        for var, value in GRAFANA_VARIABLES.items():
            query = query.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: apt-get install prometheus"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.rules.yml"  # the check itself can fail
    bad.write_text(path.read_text().replace("rate(", "rate((", 1))
    result = subprocess.run(
        [promtool, "check", "rules", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
