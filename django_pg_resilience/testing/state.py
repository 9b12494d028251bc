"""One reset for everything the package keeps per process.

Breakers, known server identities, liveness results, pools waiting to be
drained and the in-process counters all live for the life of the process, as
they should in production. A test that plays several outages in one process
starts each from a clean slate with :func:`reset_process_state`.
"""

from __future__ import annotations

__all__ = ["reset_process_state"]


def reset_process_state() -> None:
    """Forget every outage, identity, liveness result and counter of this process."""
    from django_pg_resilience import stats
    from django_pg_resilience.backend import base, identity, liveness
    from django_pg_resilience.breaker import reset_breakers

    reset_breakers()
    identity.forget()
    liveness.reset_monitors()
    base._pools_to_drain.clear()
    stats.reset()
