"""MQTT security against a real Mosquitto: TLS, passwords and the per-row ACL of config/mosquitto/.

The broker runs the example `config/mosquitto/mosquitto.conf` and `acl` from the repository,
only with its paths, port and topic prefix pointed at a tmp dir; the certificates come from
`scripts/make-dev-certs.sh`. Rows act as the ACL expects: each row agent logs in as its row id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from drivers import rack_protocol as rp
from drivers.errors import MalformedData
from drivers.racks import RackTelemetryStore
from ems.clock import ScaledClock
from ems.config import MqttConfig, parse_config
from ems.mqtt_auth import client_kwargs, client_kwargs_as
from ems.mqtt_link import MqttLink
from sim_devices.secure_broker import SecureBroker, tools_missing
from sim_devices.secure_broker import secure_broker as make_secure_broker
from sim_devices.site import PLANT_USER
from tests.conftest import running_controller, running_site, site_dict, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ems/sec"
USERS = ["ems-controller", "ems-monitor", "ems-aggregator", PLANT_USER, "row01", "row02", "row03", "row04"]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    missing = tools_missing()
    if missing:
        pytest.skip(f"needs {missing} to run a TLS Mosquitto with a password file")
    b = make_secure_broker(tmp_path_factory.mktemp("mosquitto-tls"), PREFIX, USERS)
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def _next_message(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(aiter(client.messages)), timeout_s)


async def test_controller_commands_a_row_and_the_row_receives_its_caps(secure_broker: SecureBroker) -> None:
    b = secure_broker
    async with aiomqtt.Client(**b.as_user("row03")) as row03, \
            aiomqtt.Client(**client_kwargs(b.mqtt(), identifier="test-controller")) as ctl:
        await row03.subscribe([(rp.row_caps_topic(PREFIX, "row03"), 1), (rp.cap_topic(PREFIX, "row03-rack01"), 1)])
        await ctl.publish(rp.row_caps_topic(PREFIX, "row03"), rp.encode_row_caps({"row03-rack01": 20_000.0}, 1), qos=1)
        msg = await _next_message(row03)
        assert rp.decode_row_caps(msg.payload if isinstance(msg.payload, bytes) else b"") == {"row03-rack01": 20_000.0}
        await ctl.publish(rp.cap_topic(PREFIX, "row03-rack01"), rp.encode_cap(None, 2), qos=1)
        msg = await _next_message(row03)
        assert str(msg.topic) == rp.cap_topic(PREFIX, "row03-rack01")


async def test_a_row_agent_cannot_command_another_row_or_itself(secure_broker: SecureBroker) -> None:
    b = secure_broker
    async with aiomqtt.Client(**b.as_user("row03")) as row03, aiomqtt.Client(**b.as_user("row04")) as row04, \
            aiomqtt.Client(**client_kwargs(b.mqtt(), identifier="test-controller")) as ctl:
        await row04.subscribe([(rp.row_caps_topic(PREFIX, "row04"), 1), (rp.cap_topic(PREFIX, "row04-rack01"), 1)])
        await row03.subscribe(rp.row_caps_topic(PREFIX, "row03"), qos=1)
        # a row agent may not even listen to another row's commands: Mosquitto 2.0 grants the
        # subscription but delivers nothing the ACL does not let it read (checked below)
        await row03.subscribe(rp.row_caps_topic(PREFIX, "row04"), qos=1)
        # row03 tries to cap row04 (both topics) and to write a command to its own row; the broker
        # acknowledges (MQTT 3.1.1 has no way to say no) and drops them
        await row03.publish(rp.row_caps_topic(PREFIX, "row04"), rp.encode_row_caps({"row04-rack01": 1.0}, 9), qos=1)
        await row03.publish(rp.cap_topic(PREFIX, "row04-rack01"), rp.encode_cap(1.0, 9), qos=1)
        await row03.publish(rp.row_caps_topic(PREFIX, "row03"), rp.encode_row_caps({"row03-rack01": 1.0}, 9), qos=1)
        # the controller's commands, row04's first, are the first thing either row hears: row03
        # does not see row04's, and neither row sees row03's forged ones
        for row in ("row04", "row03"):
            await ctl.publish(rp.row_caps_topic(PREFIX, row), rp.encode_row_caps({f"{row}-rack01": 30_000.0}, 1),
                              qos=1)
        for client, row in ((row04, "row04"), (row03, "row03")):
            msg = await _next_message(client)
            assert str(msg.topic) == rp.row_caps_topic(PREFIX, row)
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            assert rp.decode_row_caps(payload) == {f"{row}-rack01": 30_000.0}


async def test_a_row_agent_cannot_publish_telemetry_for_another_rows_rack(secure_broker: SecureBroker) -> None:
    b = secure_broker
    clock = ScaledClock(1.0)
    store = RackTelemetryStore(["row03-rack01", "row04-rack01"], 40_000.0, stale_after_s=60.0)
    link = MqttLink(b.mqtt(client_id="test-link"), store, clock)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        forged = rp.encode_telemetry(rp.RackTelemetry("row04-rack01", 1.0, None, 40_000.0, "idle", 1, 0.0))
        async with aiomqtt.Client(**b.as_user("row03")) as row03:
            # on row04's topic: the broker drops it; under row03's topic: the controller rejects it
            await row03.publish(rp.telemetry_topic(PREFIX, "row04-rack01"), forged, qos=1)
            await row03.publish(f"{PREFIX}/rows/row03/racks/row04-rack01/telemetry", forged, qos=1)
            own = rp.RackTelemetry("row03-rack01", 25_000.0, None, 40_000.0, "training", 1, 0.0)
            await row03.publish(rp.telemetry_topic(PREFIX, "row03-rack01"), rp.encode_telemetry(own), qos=1)
        await wait_for(lambda: store.received == 1)
        assert store.malformed == 1 and store.unknown == 0
        reading = store.reading(clock.monotonic())
        assert reading.fresh.tolist() == [True, False]
        assert reading.power_w[0] == 25_000.0 and np.isnan(reading.power_w[1])
    finally:
        task.cancel()


async def test_a_message_beyond_the_brokers_packet_limit_never_reaches_the_controller(
        secure_broker: SecureBroker) -> None:
    """The shipped config's max_packet_size: a row agent's 1 MB "telemetry" is refused by the
    broker (without it Mosquitto takes 256 MB, which the controller parsed on its loop's thread);
    one under the limit but over the decoder's 4 KiB is refused unread as malformed."""
    b = secure_broker
    topic = rp.telemetry_topic(PREFIX, "row03-rack01")
    async with aiomqtt.Client(**client_kwargs(b.mqtt(), identifier="test-controller")) as ctl:
        await ctl.subscribe(topic, qos=1)
        with contextlib.suppress(aiomqtt.MqttError):  # the broker may drop the sender's connection
            async with aiomqtt.Client(**b.as_user("row03")) as row03:
                await row03.publish(topic, b" " * 1_000_000, qos=1, timeout=2)
        async with aiomqtt.Client(**b.as_user("row03")) as row03:
            await row03.publish(topic, b" " * 5_000, qos=1)
        msg = await _next_message(ctl)
        payload = msg.payload if isinstance(msg.payload, bytes) else b""
        assert len(payload) == 5_000  # the 1 MB one never came
        with pytest.raises(MalformedData, match="5000 bytes, at most 4096"):
            rp.decode_telemetry("row03-rack01", payload)


async def test_wrong_or_missing_password_is_refused(secure_broker: SecureBroker) -> None:
    b = secure_broker
    with pytest.raises(aiomqtt.MqttCodeError, match=r"[Nn]ot authori[sz]ed"):
        async with aiomqtt.Client(**b.as_user("row03", password="not-the-password")):
            pass
    with pytest.raises(aiomqtt.MqttCodeError, match=r"[Nn]ot authori[sz]ed"):  # allow_anonymous false
        async with aiomqtt.Client(**client_kwargs_as(b.mqtt(), identifier="anon", username=None,
                                                     password_value=None)):
            pass


async def test_plain_tcp_and_an_untrusted_broker_are_refused(secure_broker: SecureBroker) -> None:
    b = secure_broker
    with pytest.raises(aiomqtt.MqttError):  # plain MQTT to the TLS port: the handshake never completes
        async with aiomqtt.Client("127.0.0.1", b.port, username="row03", password=b.passwords["row03"], timeout=3):
            pass
    untrusting = MqttConfig(url=f"mqtts://127.0.0.1:{b.port}", username="row03")  # system CAs only
    with pytest.raises(aiomqtt.MqttError):  # the client does not trust a broker it cannot verify
        async with aiomqtt.Client(**client_kwargs_as(untrusting, identifier="x", username="row03",
                                                     password_value=b.passwords["row03"]), timeout=3):
            pass


async def test_site_and_controller_end_to_end_through_the_secured_broker(secure_broker: SecureBroker) -> None:
    """The simulated racks (one login per row) and the controller (ingest, caps, status) work
    through TLS, passwords and the ACL unchanged."""
    b = secure_broker
    mqtt = b.mqtt().model_dump(mode="json")
    sim = {"mqtt_passwords_file": str(b.dir / "sim-passwords")}
    cfg = parse_config(site_dict(mqtt["url"], mqtt=mqtt, simulation=sim), "test")
    clock = ScaledClock(1.0)
    async with running_site(cfg, clock) as site, running_controller(cfg, clock) as ctl, \
            aiomqtt.Client(**b.as_user("ems-monitor")) as monitor:
        await monitor.subscribe(rp.status_topic(PREFIX), qos=0)
        await wait_for(lambda: ctl.store.reading(clock.monotonic()).stale_count == 0)
        ids = cfg.racks.rack_ids()
        assert ctl.store.malformed == 0 and ctl.store.unknown == 0
        await ctl.actuators.caps.send(ctl.mqtt.publish, ctl.actuators.caps.changes({ids[0]: 12_000.0}))
        await wait_for(lambda: site.plant.racks.power_w[0] == pytest.approx(12_000.0))
        await wait_for(lambda: ctl.store.cap_w[0] == pytest.approx(12_000.0))  # reported back by row01
        status = await _next_message(monitor)
        assert str(status.topic) == rp.status_topic(PREFIX)


async def test_only_the_aggregator_may_set_a_load_target(secure_broker: SecureBroker) -> None:
    """A row agent's (valid) load target is dropped by the broker; the aggregator's reaches the controller."""
    b = secure_broker
    clock = ScaledClock(1.0)
    link = MqttLink(b.mqtt(client_id="test-link-lt"), RackTelemetryStore(["row03-rack01"], 40_000.0, 60.0), clock)
    got: list[bytes] = []
    link.commands[f"{PREFIX}/grid/loadtarget/set"] = got.append
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        async with aiomqtt.Client(**b.as_user("row03")) as row03, \
                aiomqtt.Client(**b.as_user("ems-aggregator")) as agg:
            await row03.publish(f"{PREFIX}/grid/loadtarget/set", b'{"from": "row03"}', qos=1)
            await agg.publish(f"{PREFIX}/grid/loadtarget/set", b'{"from": "aggregator"}', qos=1)
        await wait_for(lambda: len(got) >= 1)
        await asyncio.sleep(0.3)
        assert got == [b'{"from": "aggregator"}']
    finally:
        task.cancel()


async def test_a_rotated_password_and_a_renewed_server_certificate_need_no_restart(tmp_path: Path) -> None:
    """The broker's certificate has expired: the controller's link says so and keeps trying; the
    certificate is renewed and, meanwhile, the controller's password rotated (the broker's file
    and the controller's `password_file`): the link reconnects with the new password, no restart."""
    missing = tools_missing()
    if missing:
        pytest.skip(f"needs {missing} to run a TLS Mosquitto with a password file")
    b = make_secure_broker(tmp_path, PREFIX, USERS)
    b.expire_certificate()
    b.start()
    link = MqttLink(b.mqtt(client_id="rotating"), RackTelemetryStore(["row01-rack01"], 40_000.0, 5.0),
                    ScaledClock(1.0))
    task = asyncio.create_task(link.run())
    try:
        await wait_for(lambda: link.last_error is not None, 10.0)
        assert link.connects == 0 and "certificate" in (link.last_error or "").lower()

        b.stop()  # renewal: a valid certificate; rotation: a new password on both sides
        b.renew_certificate()
        first = b.rotate_password()
        b.start()
        await wait_for(lambda: link.connects == 1, 20.0)  # the link's backoff is at most 5 s

        b.stop()  # rotated again while connected: the next reconnect reads it
        b.rotate_password()
        b.start()
        await wait_for(lambda: link.connects == 2, 20.0)
        # the previous password no longer gets in: the link used the new one, not luck
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(**b.as_user("ems-controller", password=first)):
                pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        b.stop()
