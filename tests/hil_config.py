"""config/hil-site.yaml as a test runs it: every port a free one (a fixed port may be taken)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ems.broker import free_port

HIL_SITE = Path(__file__).resolve().parents[1] / "config" / "hil-site.yaml"


def hil_site_on_free_ports() -> tuple[dict[str, Any], int]:
    """The site file as a dict with the broker, meter, BMS and PCS on free ports; and the broker's port."""
    cfg: dict[str, Any] = yaml.safe_load(HIL_SITE.read_text())
    broker_port = free_port()
    cfg["mqtt"]["url"] = f"mqtt://127.0.0.1:{broker_port}"
    cfg["meter"]["port"] = free_port()
    for unit in cfg["bess_units"]:
        unit["bms"]["port"], unit["pcs"]["port"] = free_port(), free_port()
    return cfg, broker_port
