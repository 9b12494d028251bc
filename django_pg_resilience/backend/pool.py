"""Django's connection pool (``OPTIONS["pool"]``), told apart from an outage.

psycopg_pool raises ``PoolTimeout`` both when every connection is busy (load)
and when it cannot open any (an outage). Answering load with the circuit
breaker would turn a traffic spike into seconds of fast-failing 503s for the
whole process, so the two are told apart:

* the pool's own connection attempts report their failures to the alias's
  breaker, so an outage is known to it;
* a checkout that times out while the breaker knows of no outage is load: the
  ``PoolTimeout`` reaches the caller as Django reports it (counted as
  ``pool_timeouts``), and the breaker is untouched. During an outage the
  caller gets :class:`~django_pg_resilience.errors.DatabaseUnavailable`.

A checkout waits the pool's own ``timeout`` (or the caller's), never longer
than what is left of the operation's budget.

After an outage psycopg_pool's reconnection backoff (one second, doubling, per
connection) would keep clients waiting for seconds after the database is back.
So when the breaker's probe (a direct connection) finds the database again
and this pool had failed to connect meanwhile, the pool is replaced by a fresh
one, which connects at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from django_pg_resilience import operation, stats
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.breaker import DIRECT, PROBE, CircuitBreaker
from django_pg_resilience.errors import DatabaseBusy, is_failover

__all__ = ["ResilientConnectionPool"]


class ResilientConnectionPool(ConnectionPool):
    """psycopg_pool's ConnectionPool that shares what it sees with the alias's breaker."""

    def __init__(
        self,
        *args: Any,
        alias: str,
        policy: RetryPolicy,
        probe: Callable[[float], None],
        replace: Callable[[ResilientConnectionPool], ResilientConnectionPool],
        found_broken: Callable[[Any], bool],
        **kwargs: Any,
    ) -> None:
        self.alias = alias
        self._policy = policy
        self._probe = probe
        self._replace = replace
        self._found_broken = found_broken
        #: Connection attempts of this pool that failed since it was created.
        self.connect_failures = 0
        super().__init__(*args, **kwargs)

    @property
    def _breaker(self) -> CircuitBreaker:
        return alias_state(self.alias).breaker

    def getconn(self, timeout: float | None = None) -> Any:
        wanted = self.timeout if timeout is None else timeout
        breaker = self._breaker
        budget = operation.current() or self._policy.start()
        while True:
            role = breaker.admit(budget)
            if role == PROBE and not self._probe_once(role, budget):
                continue
            if self.connect_failures and breaker.state == "closed":
                # The outage is over (a probe, maybe the background prober's, found the
                # database): a fresh pool connects at once, where this one would wait
                # out psycopg_pool's reconnection backoff.
                return self._replace(self).getconn(timeout)
            try:
                connection = super().getconn(timeout=max(min(wanted, budget.remaining), 0.001))
            except PoolClosed:
                if not self._closed:
                    raise
                # Replaced by another thread after an outage: use the new pool.
                return self._replace(self).getconn(timeout)
            except PoolTimeout as exc:
                if breaker.state != "closed":
                    raise breaker.unavailable(exc) from exc
                stats.increment("pool_timeouts", self.alias)
                raise
            if not self._found_broken(connection):
                return connection
            self.putconn(connection)  # closed: the pool discards it and opens another

    def _probe_once(self, role: str, budget: Any) -> bool:
        """Probe the server with a direct connection; True when it answered."""
        breaker = self._breaker
        started = time.monotonic()
        try:
            self._probe(budget.remaining)
        except Exception as exc:
            if not is_failover(exc):
                breaker.end_probe(role)
                raise
            stats.increment("connect_failures", self.alias)
            budget.failures += 1
            breaker.record_failure(role, exc, budget, started)
            return False
        breaker.record_success(role)
        return True

    def _connect(self, timeout: float | None = None) -> Any:
        started = time.monotonic()
        try:
            with alias_state(self.alias).connect_slots.attempt(timeout or self.timeout):
                return super()._connect(timeout)
        except DatabaseBusy:
            raise
        except Exception as exc:
            if is_failover(exc):
                self.connect_failures += 1
                stats.increment("connect_failures", self.alias)
                self._breaker.record_failure(DIRECT, exc, None, started)
            raise


_replace_lock = threading.Lock()


def replace_pool(
    pools: dict[str, Any], old: ResilientConnectionPool, make: Callable[[], Any]
) -> ResilientConnectionPool:
    """Swap ``old`` for a fresh pool in Django's registry (once, whatever the callers)."""
    with _replace_lock:
        current = pools.get(old.alias)
        if current is old:
            del pools[old.alias]
            current = None
        if current is None:
            current = make()
    current.open()
    if not old.closed:
        # Closing waits for the old pool's workers (possibly mid-connect): not
        # on the caller's time. Its waiting clients get PoolClosed and move on.
        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
    return current


def _close_quietly(pool: ConnectionPool) -> None:
    with contextlib.suppress(Exception):
        pool.close(timeout=10.0)
