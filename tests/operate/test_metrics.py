"""Every metric the services define is on the Grafana dashboard, and the dashboard names no other."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import services.metrics  # noqa: F401  (registers the metrics)
from tests.services_proc import ROOT


def test_grafana_dashboard_covers_every_metric():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "wan22-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = {re.sub(r"_(bucket|total|sum|count)$", "", name) for name in re.findall(r"wan22_[a-z_]+", exprs)}
    defined = {m.name for m in REGISTRY.collect() if m.name.startswith("wan22_")}
    assert used == defined
