"""Long-running commands stop on SIGTERM / Ctrl-C without a lock in the signal handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from django_pg_resilience.management.stopping import stopped_by_signals

ROOT = Path(__file__).resolve().parent.parent

# Waits in a tight loop, so that most signals land while the main thread is inside the stop's
# wait. A handler that takes a lock the main thread may hold there (threading.Event.set: its
# lock is not reentrant) hangs this within a few hundred signals.
_WAITER = textwrap.dedent(
    """
    import signal
    from django_pg_resilience.management.stopping import stopped_by_signals

    signal.signal(signal.SIGINT, lambda *_: None)  # the caller's: takes the second signal
    print("ready", flush=True)
    for stopped in range(ROUNDS):
        with stopped_by_signals() as stop:
            while not stop.wait(0.00001):
                pass
        print(stopped, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting: Python puts SIG_DFL back for its own
    print("done", flush=True)
    """
)


def test_a_signal_landing_while_the_loop_waits_never_hangs_it() -> None:
    rounds = 3000
    child = subprocess.Popen(
        [sys.executable, "-c", _WAITER.replace("ROUNDS", str(rounds))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert child.stdout is not None
    stopped: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            stopped.append(line.strip())
            ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "the child never started"
        progress, progressed_at = len(stopped), time.monotonic()
        while stopped[-1] != "done" and child.poll() is None:
            if len(stopped) != progress:
                progress, progressed_at = len(stopped), time.monotonic()
            elif time.monotonic() - progressed_at > 10:
                break  # no stop in 10 s while signals keep coming: hung
            child.send_signal(signal.SIGINT)
            time.sleep(0.0005)  # a signal every half millisecond: the load, not a wait
        assert stopped[-1] == "done", f"hung after {len(stopped) - 1} of {rounds} stops"
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    reader.join(10)
    assert child.returncode == 0
    assert stopped[-2:] == [str(rounds - 1), "done"]


class CallersHandler:
    """The handler of a program that runs the command (``call_command``); records signals."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.caught.append(signum)

    def installed_for(self, signum: int) -> bool:
        return signal.getsignal(signum) is self


@pytest.fixture
def callers_handler() -> Iterator[CallersHandler]:
    handler = CallersHandler()
    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    yield handler
    for signum, previous in before.items():
        signal.signal(signum, previous)


def test_a_second_signal_is_ours_too_unless_ctrl_c_twice_is_asked_for(
    callers_handler: CallersHandler,
) -> None:
    """process_webhooks: a second Ctrl-C still waits for the event in hand."""
    with stopped_by_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(30)
        assert not callers_handler.installed_for(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(30)
    assert callers_handler.caught == []
    assert callers_handler.installed_for(signal.SIGINT)
    assert callers_handler.installed_for(signal.SIGTERM)


def test_with_ctrl_c_twice_the_second_ctrl_c_is_the_callers(
    callers_handler: CallersHandler,
) -> None:
    """health --watch: the first signal stops after the round, a second Ctrl-C at once."""
    with stopped_by_signals(ctrl_c_twice=True) as stop:
        assert not stop.wait(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (main) thread
        assert stop.wait(30)
        assert callers_handler.caught == []  # the command's handler took the first one
        assert callers_handler.installed_for(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second is the caller's
        deadline = time.monotonic() + 30
        while not callers_handler.caught and time.monotonic() < deadline:
            time.sleep(0.001)
        assert callers_handler.caught == [signal.SIGINT]
    assert callers_handler.installed_for(signal.SIGTERM)


def test_outside_the_main_thread_no_handler_is_installed() -> None:
    seen: list[object] = []

    def in_a_thread() -> None:
        with stopped_by_signals() as stop:
            seen.append(signal.getsignal(signal.SIGINT))
            stop.set()
            seen.append(stop.wait(0))

    installed = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(30)
    assert seen == [installed, True]


def test_a_signal_the_process_ignores_stays_ignored(callers_handler: CallersHandler) -> None:
    """Started with ``nohup`` or ``cmd &`` (SIGINT ignored), Ctrl-C does not stop the loop;
    SIGTERM still does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with stopped_by_signals() as stop:
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert not stop.wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(30)
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert callers_handler.installed_for(signal.SIGTERM)
