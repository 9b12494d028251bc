"""The open circuit's prober: one thread per alias and process, off the request path.

While the circuit is open every caller is refused at once from the breaker's
state; the probes that find the database again run here, in a daemon thread of
their own, about once per ``breaker_open_interval`` while callers are being
refused, and once per ``breaker_idle_probe_interval`` (4 s) when none is: an
idle process does not keep dialling a database that is away, and a worker that
polls once a second makes at most one attempt a second. So no request ever waits
for a probe: before, the one request that happened to carry it waited the whole
connect timeout (2 s on a silent node) while every other got its 503 in a
millisecond. The thread starts when the circuit opens and ends when it closes.

A probe that meets a *full* server (53300) or a configuration error still
closes the circuit: the server answered, and callers must meet what it says
themselves (a busy backoff, or the configuration error).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from django_pg_resilience.breaker import PROBE, CircuitBreaker
from django_pg_resilience.errors import ErrorKind, classify

__all__ = ["BackgroundProber"]

logger = logging.getLogger("django_pg_resilience")

#: Signature of a probe: one connection attempt within ``timeout`` seconds; raises on failure.
Probe = Callable[[float], None]


class BackgroundProber:
    """Runs the open circuit's probes of one alias in a thread of their own."""

    def __init__(self, breaker: CircuitBreaker, probe: Probe, timeout: float) -> None:
        self.breaker = breaker
        self.probe = probe
        self.timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopped = threading.Event()
        #: Probes made (for tests and benchmarks).
        self.probes = 0

    def ensure_running(self) -> None:
        """Start the thread unless it runs (when the circuit opens, and when a probe is late)."""
        with self._lock:
            thread = self._thread
            if thread is not None and thread.is_alive() and self._pid == os.getpid():
                return
            if self._stopped.is_set():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name=f"pg-resilience-prober-{self.breaker.alias}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the thread (the alias's state is being reset)."""
        self._stopped.set()

    def _run(self) -> None:
        breaker = self.breaker
        while not self._stopped.is_set():
            plan = breaker.seconds_to_next_probe()
            if plan is None:
                return  # closed: the next opening starts a new thread
            wait, sooner_on_demand = plan
            if wait > 0:
                # A caller refused meanwhile wants the database: that makes a probe due.
                (breaker.demand if sooner_on_demand else self._stopped).wait(wait)
                continue
            if breaker.try_probe():
                self._probe_once()

    def _probe_once(self) -> None:
        breaker = self.breaker
        self.probes += 1
        try:
            self.probe(self.timeout)
        except Exception as exc:
            kind = classify(exc)
            if kind is ErrorKind.CONNECTION or kind is ErrorKind.READ_ONLY:
                breaker.record_failure(PROBE, exc, None)
                return
            # The server answered (full, or refusing our credentials): callers meet it now.
            logger.info(
                "Probe of database %r answered %s; the circuit closes and callers connect.",
                breaker.alias,
                kind.value,
            )
        breaker.record_success(PROBE)
