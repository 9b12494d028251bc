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

import select
import time
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from django_pg_resilience import stats
from django_pg_resilience.backend.compat import WaitTimeout
from django_pg_resilience.backend.liveness import ConnectionWatch

__all__ = ["IoTimeout", "PeerUnresponsive", "ResilientConnection"]

RV = TypeVar("RV")

#: Seconds between two looks at the breaker and the monitor once a statement
#: has waited past ``liveness_after``.
_STEP = 0.25
#: After the server says the session is idle (it sent the answer), how long the
#: answer still has to arrive before it counts as lost.
_IDLE_GRACE = 0.5


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
    _idle_poller: select.poll | None = None

    def found_closed(self) -> bool:
        """One non-blocking poll: True when the server closed this idle connection.

        EOF or a reset waiting on the socket is read by libpq, which then marks
        the connection bad. The poller is registered once per connection.
        """
        poller = self._idle_poller
        try:
            if poller is None:
                poller = self._idle_poller = select.poll()
                poller.register(self.pgconn.socket, select.POLLIN)
            if not poller.poll(0):
                return False
            self.pgconn.consume_input()
        except (OSError, ValueError, psycopg.Error):
            pass
        return self.closed

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        watch = self.watch
        first = watch.liveness_after if watch is not None else 0.0
        io_timeout = self.io_timeout
        if io_timeout and (not first or io_timeout < first):
            first = io_timeout
        if timeout is not None or not first:
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=first)
        except WaitTimeout:
            # Only a statement that waited past ``first`` pays for what follows.
            return self._wait_long(gen, interval, time.monotonic() - first)

    def _wait_long(self, gen: Any, interval: float, started: float) -> Any:
        # psycopg's generators take a wait that ended on a timeout as a spurious
        # wake-up (psycopg itself waits again on the same one after Ctrl-C), so
        # the same generator is simply waited on again.
        watch = self.watch
        io_timeout = self.io_timeout or 0.0
        liveness_after = watch.liveness_after if watch is not None else 0.0
        if self.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
            # No statement is running: waiting for notifications (LISTEN), which
            # may legitimately take forever and leave the session idle.
            liveness_after = 0.0
            if not io_timeout:
                return super().wait(gen, interval=interval)
        pid = self.pgconn.backend_pid
        asked = False
        try:
            while True:
                waited = time.monotonic() - started
                if io_timeout and waited >= io_timeout:
                    self._abandon(
                        IoTimeout(
                            f"no answer from the server within io_timeout={io_timeout:g} s; "
                            "the connection was closed"
                        )
                    )
                if watch is not None and liveness_after and waited >= liveness_after:
                    asked = True
                    reason = watch.monitor.verdict(pid, watch)
                    if reason == "idle":
                        # The server finished; the answer may still be on its way.
                        try:
                            return super().wait(gen, interval=interval, timeout=_IDLE_GRACE)
                        except WaitTimeout:
                            reason = (
                                "the server finished the statement but its answer never arrived"
                            )
                    if reason is not None:
                        stats.increment("silent_peer_aborts", watch.monitor.alias)
                        error = PeerUnresponsive(
                            f"no answer for {time.monotonic() - started:.1f} s and {reason}; "
                            "the connection was closed"
                        )
                        error.suspected_at = started + liveness_after
                        self._abandon(error)
                step = _STEP if not io_timeout else max(min(_STEP, io_timeout - waited), 0.001)
                try:
                    return super().wait(gen, interval=interval, timeout=step)
                except WaitTimeout:
                    pass
        finally:
            if asked and watch is not None:
                watch.monitor.done(pid)

    def _abandon(self, error: psycopg.OperationalError) -> None:
        # The protocol is mid-message: the connection cannot be reused.
        self.pgconn.finish()
        raise error
