"""The fence and the `ha:` section, pure."""

from __future__ import annotations

import pytest

from ems.config import parse_config
from ems.ha.fence import Fence
from ems.ha.settings import HaConfig
from ems.model.errors import ConfigError
from tests.conftest import site_dict


def test_no_writes_before_the_first_renewal() -> None:
    assert not Fence(ttl_s=0.6, guard_s=0.2).may_write(0.0)


def test_writes_stop_guard_before_the_earliest_expiry() -> None:
    f = Fence(ttl_s=0.6, guard_s=0.2)
    f.renewed(10.0)
    assert f.may_write(10.39)
    assert not f.may_write(10.4)
    assert f.expires_not_before_s() == pytest.approx(10.6)


def test_an_older_acknowledgement_never_moves_the_deadline_back() -> None:
    f = Fence(ttl_s=0.6, guard_s=0.2)
    f.renewed(10.0)
    f.renewed(9.0)  # a late answer to an earlier renewal
    assert f.write_deadline_s() == pytest.approx(10.4)


def test_revoked_lease_writes_nothing() -> None:
    f = Fence(ttl_s=0.6, guard_s=0.2)
    f.renewed(10.0)
    f.revoke()
    assert not f.may_write(10.0)


def test_a_renewal_that_cannot_land_before_the_guard_is_refused() -> None:
    with pytest.raises(ConfigError, match="lease_ttl_s"):
        parse_config(site_dict("mqtt://127.0.0.1:1883", ha={"lease_ttl_s": 0.3, "renew_every_s": 0.2}))


def test_bad_nats_url_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"ha\.nats_url"):
        parse_config(site_dict("mqtt://127.0.0.1:1883", ha={"nats_url": "http://x"}))


def test_buckets_are_named_after_the_site() -> None:
    cfg = HaConfig()
    assert cfg.lease_bucket("hil gpu.site") == "ems_lease_hil_gpu_site"
    assert cfg.state_bucket("s") == "ems_lease_s_state"
