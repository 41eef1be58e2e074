"""The server thread's pacer: past its share of a core it pauses; under it, never."""

from __future__ import annotations

import time

from ems.operator.server_thread import Pacer


def _burn(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_work_past_the_share_is_paid_for_with_a_pause() -> None:
    pacer = Pacer(cpu_share=0.1)
    pacer.start()
    _burn(0.01)
    pacer.check()
    assert pacer.paused_s > 0


def test_no_pacing_at_a_full_share_nor_while_idle() -> None:
    full = Pacer(cpu_share=1.0)
    full.start()
    _burn(0.01)
    full.check()
    idle = Pacer(cpu_share=0.1)
    idle.start()
    time.sleep(0.02)
    idle.check()
    assert full.paused_s == 0 and idle.paused_s == 0
