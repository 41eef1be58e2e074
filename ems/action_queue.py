"""Operator actions handed from a serving thread to the control loop, through a bounded queue.

The operator server (its own thread and event loop) never changes the controller: it
submits an action here and waits on the future it gets back. The control loop applies
what is queued at the start of its next period, between gather and step, on its own
thread, and answers each future with the action's result (its event) or its refusal
(the typed error). The queue is bounded and a period applies at most `per_period`
actions, because each is recorded durably (an fsync): a burst of actions cannot stretch
a period by more than that. A caller that gave up (its future cancelled) is skipped:
an action is applied only while someone waits for the answer.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import structlog

from ems.model.errors import EmsError

log = structlog.get_logger("ems.actions")
T = TypeVar("T")
S = TypeVar("S")  # what actions act on (the operator controls)


class QueueFull(EmsError):
    """Too many operator actions wait for the next period; the caller may try again shortly."""


class ActionQueue(Generic[S]):
    def __init__(self, maxsize: int = 16, per_period: int = 4) -> None:
        self._q: queue.Queue[tuple[Callable[[S], Any], Future[Any]]] = queue.Queue(maxsize)
        self.per_period = per_period
        self.applied = 0
        self.rejected_full = 0

    def submit(self, act: Callable[[S], T]) -> Future[T]:
        """Queue `act` for the next period (any thread); the loop calls it with what it acts on.
        Raises QueueFull when the queue is full."""
        fut: Future[T] = Future()
        try:
            self._q.put_nowait((act, fut))
        except queue.Full:
            self.rejected_full += 1
            raise QueueFull(f"{self._q.maxsize} operator actions are already waiting for the next period") from None
        return fut

    def pending(self) -> int:
        return self._q.qsize()

    def apply_pending(self, target: S) -> int:
        """Apply up to `per_period` queued actions to `target`, on the calling (control loop's) thread."""
        done = 0
        while done < self.per_period:
            try:
                act, fut = self._q.get_nowait()
            except queue.Empty:
                break
            if not fut.set_running_or_notify_cancel():
                continue  # its caller stopped waiting: not applied
            done += 1
            try:
                fut.set_result(act(target))
            except EmsError as exc:  # a refusal: the caller maps it to its status code
                fut.set_exception(exc)
            except Exception as exc:  # a bug in an action fails that action, never the period
                log.exception("operator action failed")
                fut.set_exception(exc)
        self.applied += done
        return done
