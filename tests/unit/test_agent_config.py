"""The agent file of `ems agent`: the example loads, the broker identity is the rack's own,
and a bad field is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ems.agent.config import load_agent_config
from ems.model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_agent_file_is_valid() -> None:
    cfg = load_agent_config(ROOT / "config" / "agent-example.yaml")
    assert (cfg.rack_id, cfg.row_id, cfg.node_overhead_w) == ("row03-rack07", "row03", 1800.0)
    # never the controller's default client id: the broker would drop the controller for it
    assert cfg.client_id == "ems-agent-row03-rack07"


def test_mqtt_url_override_keeps_the_rest_and_an_explicit_client_id(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"rack_id": "row01-rack01",
                                    "mqtt": {"topic_prefix": "site7", "client_id": "node-a17"}}))
    cfg = load_agent_config(path, mqtt_url="mqtt://10.0.0.5:1884")
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("10.0.0.5", 1884)
    assert (cfg.mqtt.topic_prefix, cfg.client_id) == ("site7", "node-a17")


@pytest.mark.parametrize(("data", "field"), [
    ({"rack_id": "rack7"}, "rack_id"),
    ({"rack_id": "row01-rack01", "telemetry_period_s": 0}, "telemetry_period_s"),
    ({"rack_id": "row01-rack01", "node_overhead_w": -1}, "node_overhead_w"),
    ({"rack_id": "row01-rack01", "smoothing_preset": 5}, "smoothing_preset"),
    ({"rack_id": "row01-rack01", "gpus": []}, "gpus"),
    ({"rack_id": "row01-rack01", "gpus": [0, 1, 0]}, "gpus"),  # gpu0 read twice, two shares of each cap
    ({"rack_id": "row01-rack01", "gpus": [-1]}, "gpus"),
    ({"rack_id": "row01-rack01", "mqtt": {"password": "x"}}, "mqtt"),
    ({"rack_id": "row01-rack01", "cap_w": 5}, "cap_w"),
])
def test_a_bad_field_is_named(tmp_path: Path, data: dict[str, object], field: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"invalid agent configuration\n  {field}"):
        load_agent_config(path, mqtt_url=None)
