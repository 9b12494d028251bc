"""One reset for everything the package keeps per process.

What the package knows of each database alias (its breaker, server identity,
liveness results, connection budget, the pool waiting to be drained) lives in
one :class:`~django_pg_resilience.backend.alias.AliasState` per alias, for the
life of the process, as it should in production; beside it, the maintenance
switch's last read and the cached cluster report. A test that plays several
outages in one process starts each from a clean slate with
:func:`reset_process_state`.
"""

from __future__ import annotations

__all__ = ["reset_process_state"]


def reset_process_state() -> None:
    """Forget every alias's state (outages, identities, liveness results), what the process
    last read of the maintenance switch, the cached cluster report and provider answers, and
    every counter."""
    from django_pg_resilience import stats
    from django_pg_resilience.backend import alias
    from django_pg_resilience.health import cache, digitalocean_provider
    from django_pg_resilience.maintenance import reader

    alias.reset()
    reader.reset()
    cache.forget()
    digitalocean_provider.forget_answers()
    stats.reset()
