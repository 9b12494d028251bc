"""The pure retry policy: exact schedules with an injected clock and random source."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_pg_resilience.backoff import RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_steps_double_from_base_up_to_cap() -> None:
    policy = RetryPolicy(base=0.05, cap=0.3, jitter=False)
    assert [policy.step(n) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def test_full_jitter_scales_the_step_by_the_random_draw() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0, random=lambda: 0.5)
    assert policy.delay(3) == pytest.approx(0.2)


def test_budget_gives_up_after_max_attempts() -> None:
    clock = FakeClock()
    budget = RetryPolicy(max_attempts=3, deadline=60, jitter=False, clock=clock).start()
    assert budget.next_delay() is not None
    assert budget.next_delay() is not None
    assert budget.next_delay() is None
    assert budget.failures == 3


def test_budget_gives_up_at_the_deadline_and_never_waits_past_it() -> None:
    clock = FakeClock()
    policy = RetryPolicy(deadline=1.0, base=0.4, cap=10, jitter=False, clock=clock)
    budget = policy.start()
    assert budget.next_delay() == pytest.approx(0.4)
    clock.now += 0.8
    assert budget.next_delay() == pytest.approx(0.2)  # cut to the deadline
    clock.now += 0.2
    assert budget.next_delay() is None
    assert budget.remaining == 0.0


@given(
    failures=st.integers(min_value=1, max_value=10_000),
    draw=st.floats(min_value=0.0, max_value=1.0),
)
def test_delay_is_always_between_zero_and_cap(failures: int, draw: float) -> None:
    policy = RetryPolicy(base=0.05, cap=0.2, random=lambda: draw)
    assert 0.0 <= policy.delay(failures) <= 0.2
