"""Operator actions handed to the control loop: bounded, answered, never applied once abandoned."""

from __future__ import annotations

import pytest

from ems.action_queue import ActionQueue, QueueFull
from ems.model.errors import EmsError


class Refused(EmsError):
    pass


def test_actions_apply_in_order_on_the_loops_turn_and_answer_their_callers() -> None:
    q: ActionQueue[list[str]] = ActionQueue(maxsize=4, per_period=4)
    target: list[str] = []
    first = q.submit(lambda t: t.append("first") or len(t))
    second = q.submit(lambda t: t.append("second") or len(t))
    assert not first.done() and target == []  # nothing happens until the loop applies them
    assert q.apply_pending(target) == 2
    assert target == ["first", "second"] and first.result() == 1 and second.result() == 2


def test_a_full_queue_refuses_and_a_period_applies_a_bounded_number() -> None:
    q: ActionQueue[list[int]] = ActionQueue(maxsize=3, per_period=2)
    futures = [q.submit(lambda t, i=i: t.append(i)) for i in range(3)]
    with pytest.raises(QueueFull):
        q.submit(lambda t: t.append(99))
    target: list[int] = []
    assert q.apply_pending(target) == 2 and target == [0, 1] and not futures[2].done()
    assert q.apply_pending(target) == 1 and target == [0, 1, 2] and q.pending() == 0


def test_refusals_and_failures_reach_the_caller_not_the_loop() -> None:
    q: ActionQueue[None] = ActionQueue()

    def refuse(_: None) -> None:
        raise Refused("out of bounds")

    def broken(_: None) -> None:
        raise ZeroDivisionError

    refused, failed, fine = q.submit(refuse), q.submit(broken), q.submit(lambda _: "ok")
    assert q.apply_pending(None) == 3
    assert isinstance(refused.exception(), Refused) and isinstance(failed.exception(), ZeroDivisionError)
    assert fine.result() == "ok"


def test_an_action_whose_caller_gave_up_is_never_applied() -> None:
    q: ActionQueue[list[str]] = ActionQueue()
    target: list[str] = []
    abandoned = q.submit(lambda t: t.append("late"))
    assert abandoned.cancel()  # the handler's wait ran out: it answered 503 "not applied"
    assert q.apply_pending(target) == 0 and target == []
