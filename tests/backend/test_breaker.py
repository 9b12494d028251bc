"""The circuit breaker on its own: threads and a fake connect, no database."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from django_pg_resilience import signals
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.breaker import BreakerSettings, CircuitBreaker
from django_pg_resilience.errors import DatabaseUnavailable


class FakeDatabase:
    """A connect that is refused until ``up`` is set; counts concurrent attempts."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.lock = threading.Lock()
        self.attempts = 0
        self.active = 0
        self.max_active_while_down = 0

    def connect(self, timeout: float) -> str:
        with self.lock:
            self.attempts += 1
            self.active += 1
            if not self.up.is_set():
                self.max_active_while_down = max(self.max_active_while_down, self.active)
        try:
            if not self.up.is_set():
                time.sleep(0.005)  # a refused connect takes a moment
                raise ConnectionRefusedError("refused")
            return "connection"
        finally:
            with self.lock:
                self.active -= 1


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError)


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        threading.Event().wait(0.005)


def test_one_caller_probes_while_the_others_wait_and_all_proceed_on_success() -> None:
    breaker = CircuitBreaker("t")
    db = FakeDatabase()
    policy = RetryPolicy(deadline=20.0, max_attempts=1000, base=0.01, cap=0.05)
    results: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            results.append(breaker.call(db.connect, policy.start(), is_retryable=retryable))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=caller)
    first.start()
    wait_until(lambda: breaker.state == "holding")
    others = [threading.Thread(target=caller) for _ in range(15)]
    for thread in others:
        thread.start()
    wait_until(lambda: db.attempts >= 8)
    down_attempts = db.attempts
    db.up.set()
    released = time.monotonic()
    for thread in [first, *others]:
        thread.join(10)
    assert time.monotonic() - released < 2
    assert not errors
    assert results == ["connection"] * 16
    assert db.max_active_while_down == 1  # no herd: one probe at a time
    assert db.attempts <= down_attempts + 2 + 16
    assert breaker.state == "closed"


def test_an_old_outage_opens_the_circuit_and_callers_fail_fast_until_a_probe_succeeds() -> None:
    breaker = CircuitBreaker("t", BreakerSettings(open_interval=0.3, max_interval=1.0))
    db = FakeDatabase()
    policy = RetryPolicy(deadline=0.2, base=0.01, cap=0.05)
    opened: list[dict[str, object]] = []
    closed: list[dict[str, object]] = []
    signals.breaker_opened.connect(lambda **kw: opened.append(kw), weak=False, dispatch_uid="o")
    signals.breaker_closed.connect(lambda **kw: closed.append(kw), weak=False, dispatch_uid="c")
    try:
        with pytest.raises(DatabaseUnavailable):
            breaker.call(db.connect, policy.start(), is_retryable=retryable)
        assert breaker.state == "open"
        assert len(opened) == 1
        attempts = db.attempts

        with pytest.raises(DatabaseUnavailable) as raised:
            breaker.call(db.connect, policy.start(), is_retryable=retryable)
        assert db.attempts == attempts  # failed fast: no connect attempted
        assert 0 < raised.value.retry_after <= 0.3

        db.up.set()
        wait_until(lambda: breaker.retry_after() == 0.0)
        assert breaker.call(db.connect, policy.start(), is_retryable=retryable)
        assert breaker.state == "closed"
        assert len(closed) == 1 and closed[0]["outage"] > 0
    finally:
        signals.breaker_opened.disconnect(dispatch_uid="o")
        signals.breaker_closed.disconnect(dispatch_uid="c")


def test_a_failed_probe_while_open_pushes_the_next_probe_back() -> None:
    breaker = CircuitBreaker("t", BreakerSettings(open_interval=0.1, max_interval=1.0))
    db = FakeDatabase()
    policy = RetryPolicy(deadline=0.1, base=0.01, cap=0.02)
    with pytest.raises(DatabaseUnavailable):
        breaker.call(db.connect, policy.start(), is_retryable=retryable)
    wait_until(lambda: breaker.retry_after() == 0.0)
    attempts = db.attempts
    with pytest.raises(DatabaseUnavailable) as raised:
        breaker.call(db.connect, policy.start(), is_retryable=retryable)
    assert db.attempts == attempts + 1  # exactly one probe
    assert raised.value.retry_after > 0.1  # the interval doubled
    assert breaker.state == "open"


def test_a_configuration_error_is_raised_at_once() -> None:
    breaker = CircuitBreaker("t")
    calls = 0

    def bad_password(timeout: float) -> str:
        nonlocal calls
        calls += 1
        raise PermissionError("password authentication failed")

    with pytest.raises(PermissionError):
        breaker.call(bad_password, RetryPolicy().start(), is_retryable=retryable)
    assert calls == 1
    assert breaker.state == "closed"


class _BlockingHandler(logging.Handler):
    """A log handler as slow as SMTP or Sentry on a bad day: blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.unblock = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "opened" in record.getMessage():  # the breaker opening: once per outage
            self.entered.set()
            self.unblock.wait(10)


def test_a_slow_log_handler_never_stalls_the_other_threads_of_the_alias() -> None:
    breaker = CircuitBreaker("t")
    db = FakeDatabase()
    handler = _BlockingHandler()
    logger = logging.getLogger("django_pg_resilience")
    logger.addHandler(handler)
    try:

        def call() -> None:
            with pytest.raises(DatabaseUnavailable):
                breaker.call(db.connect, RetryPolicy(deadline=0.2).start(), is_retryable=retryable)

        caller = threading.Thread(target=call)
        caller.start()
        assert handler.entered.wait(10)  # the caller is inside the log handler now
        asked = threading.Thread(target=breaker.retry_after)
        asked.start()
        asked.join(timeout=2)
        assert not asked.is_alive(), "the breaker's lock was held while logging"
    finally:
        handler.unblock.set()
        logger.removeHandler(handler)
    caller.join(timeout=10)


def test_an_outage_logs_one_error_line_however_many_callers_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = CircuitBreaker("t")
    db = FakeDatabase()
    policy = RetryPolicy(deadline=0.1, base=0.01, cap=0.02)
    with caplog.at_level(logging.ERROR, logger="django_pg_resilience"):
        for _ in range(20):
            with pytest.raises(DatabaseUnavailable):
                breaker.call(db.connect, policy.start(), is_retryable=retryable)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert breaker.state == "open"


def test_an_open_circuit_probes_about_once_a_second_however_long_the_outage() -> None:
    now = [0.0]
    breaker = CircuitBreaker("t", BreakerSettings(), clock=lambda: now[0], rand=lambda: 1.0)
    policy = RetryPolicy(deadline=4.0, clock=lambda: now[0])
    for _ in range(60):  # a minute of failed probes
        breaker.record_failure("probe", ConnectionRefusedError(), policy.start())
        now[0] += 5.0
    assert breaker.state == "open"
    breaker.record_failure("probe", ConnectionRefusedError(), policy.start())
    assert 0.75 <= breaker.retry_after() <= 1.0


def test_a_caller_that_gives_up_is_not_told_of_a_next_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replica alias probes with max_attempts 1: its log line must not promise another try."""
    breaker = CircuitBreaker("replica")
    db = FakeDatabase()
    policy = RetryPolicy(deadline=5.0, max_attempts=1)
    with (
        caplog.at_level(logging.WARNING, "django_pg_resilience"),
        pytest.raises(DatabaseUnavailable),
    ):
        breaker.call(db.connect, policy.start(), is_retryable=retryable)
    lines = [r.getMessage() for r in caplog.records if "Connection attempt" in r.getMessage()]
    assert len(lines) == 1 and db.attempts == 1
    assert "no attempt left for this caller" in lines[0]
    assert "next attempt in" not in lines[0]
