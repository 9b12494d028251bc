"""The psycopg connection class the backend opens: psycopg's own, with a bounded wait.

A statement waits for its answer in :meth:`ResilientConnection.wait`. The
happy path is psycopg's own wait with a timeout of ``liveness_after`` (a
second by default): a statement answered sooner costs nothing more. Past it,
the wait goes on in short steps, and at each step:

* the alias's circuit breaker is asked whether an outage began after this
  connection was opened (a read of two attributes): if so the wait ends now;
* the liveness monitor (:mod:`.liveness`) is asked whether the server still
  runs this session; one check over a fresh connection serves every waiting
  statement of the process.

A statement whose server is dead, replaced or unreachable is abandoned: the
connection is closed (the protocol is mid-message, it cannot be reused) and
:class:`PeerUnresponsive` raised, which the backend handles like any lost
connection. One whose server is alive keeps waiting, however long it runs.
``io_timeout``, when set, still bounds the whole round trip.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from django_pg_resilience import stats
from django_pg_resilience.backend.liveness import ConnectionWatch, monitor_for

__all__ = ["IoTimeout", "PeerUnresponsive", "ResilientConnection"]

RV = TypeVar("RV")

#: Seconds between two looks at the breaker and the monitor once a statement
#: has waited past ``liveness_after``.
_STEP = 0.25
#: After the server says the session is idle (it sent the answer), how long the
#: answer still has to arrive before it counts as lost.
_IDLE_GRACE = 0.5


class _Resumable:
    """A psycopg wait generator that can be waited on again after a wait timed out.

    psycopg's wait functions start with ``next(gen)``, which would resume the
    generator with no readiness; this one answers with the state it last
    asked to wait for, so a new wait picks up where the timed-out one stopped.
    """

    __slots__ = ("_gen", "_last")

    def __init__(self, gen: Any) -> None:
        self._gen = gen
        self._last: Any = None

    def __iter__(self) -> _Resumable:
        return self

    def __next__(self) -> Any:
        if self._last is None:
            self._last = next(self._gen)
        return self._last

    def send(self, ready: Any) -> Any:
        self._last = self._gen.send(ready)
        return self._last


class IoTimeout(psycopg.OperationalError):
    """No complete answer from the server within ``io_timeout``; the connection was closed."""


class PeerUnresponsive(psycopg.OperationalError):
    """A statement's server was found dead, replaced or unreachable; the connection was closed.

    ``suspected_at`` (``time.monotonic()``) is when the wait passed
    ``liveness_after``: the recovery that follows counts its deadline from there.
    """

    suspected_at: float | None = None


class ResilientConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits end when the server is found gone."""

    #: Seconds; None or 0 is no bound. Set per connection by the backend.
    io_timeout: float | None = None
    #: Set by the backend when the connection is opened; None: psycopg's plain wait.
    watch: ConnectionWatch | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        watch = self.watch
        io_timeout = self.io_timeout or 0.0
        liveness_after = watch.liveness_after if watch is not None else 0.0
        if timeout is not None or not (liveness_after or io_timeout):
            return super().wait(gen, interval=interval, timeout=timeout)
        gen = _Resumable(gen)
        started = time.monotonic()
        step = min(t for t in (liveness_after, io_timeout) if t)
        pid = self.pgconn.backend_pid
        asked = False
        try:
            while True:
                try:
                    return super().wait(gen, interval=interval, timeout=step)
                except pg_errors._WaitTimeout:
                    pass
                waited = time.monotonic() - started
                if io_timeout and waited >= io_timeout:
                    self._abandon(
                        IoTimeout(
                            f"no answer from the server within io_timeout={io_timeout:g} s; "
                            "the connection was closed"
                        )
                    )
                step = _STEP if not io_timeout else max(min(_STEP, io_timeout - waited), 0.001)
                if watch is None or not liveness_after or waited < liveness_after:
                    continue
                asked = True
                reason = monitor_for(watch.alias).verdict(pid, watch)
                if reason == "idle":
                    # The server finished; the answer may still be on its way.
                    try:
                        return super().wait(gen, interval=interval, timeout=_IDLE_GRACE)
                    except pg_errors._WaitTimeout:
                        reason = "the server finished the statement but its answer never arrived"
                if reason is not None:
                    stats.increment("silent_peer_aborts", watch.alias)
                    error = PeerUnresponsive(
                        f"no answer for {time.monotonic() - started:.1f} s and {reason}; "
                        "the connection was closed"
                    )
                    error.suspected_at = started + liveness_after
                    self._abandon(error)
        finally:
            if asked and watch is not None:
                monitor_for(watch.alias).done(pid)

    def _abandon(self, error: psycopg.OperationalError) -> None:
        # The protocol is mid-message: the connection cannot be reused.
        self.pgconn.finish()
        raise error
