"""Providers: what the health round asks besides PostgreSQL (a cloud API, PgBouncer, Patroni).

A provider is a class registered by name, like a Django system check. Each
round of checks (``manage.py health``, the endpoints' shared round) asks every
*enabled* provider in a thread of its own, in parallel with the node probes,
and waits for it at most its :meth:`Provider.budget`; one that does not answer
in time, or raises, becomes an UNKNOWN check and the round goes on. What a
provider returns is merged into the report: its checks next to the others (so
they count in the overall status and may be named in ``READINESS_ENFORCE``),
its facts under its name in the JSON, and, if it says how, its rows in the
table, its gauges on ``/metrics`` and its Nagios perfdata.

The built-in providers are :data:`BUILTIN` (DigitalOcean, PgBouncer); a new one
is a module of its own, registered when the app starts::

    # myproject/patroni_health.py
    from django_pg_resilience.health.providers import Provider, ProviderResult, register

    @register
    class Patroni(Provider):
        name = "patroni"
        ...

    # myproject/apps.py
    class MyAppConfig(AppConfig):
        def ready(self):
            from myproject import patroni_health  # noqa: F401 (registers the provider)

See docs/health.md ("Writing a provider") for a complete example.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from django.utils.module_loading import import_string

from django_pg_resilience.conf import AppSettings
from django_pg_resilience.health.evaluate import Check, Thresholds
from django_pg_resilience.health.status import Status

__all__ = [
    "BUILTIN",
    "Provider",
    "ProviderResult",
    "RoundContext",
    "Sample",
    "prometheus_metrics",
    "register",
    "registered",
    "run_providers",
    "unregister",
]

#: (name without the ``pg_resilience_`` prefix, labels, value): one gauge sample.
Sample = tuple[str, dict[str, str], float]
#: The providers every round knows, in this order, before any registered one.
BUILTIN = (
    "django_pg_resilience.health.digitalocean_provider.DigitalOceanProvider",
    "django_pg_resilience.health.pgbouncer_provider.PgBouncerProvider",
)


@dataclasses.dataclass(frozen=True)
class RoundContext:
    """What one round tells a provider."""

    settings: AppSettings
    thresholds: Thresholds
    #: Seconds each request of the round may take (``HEALTH_TIMEOUT`` or ``--timeout``).
    timeout: float
    #: True: ask now (``manage.py health``). False: the endpoints' shared round, where a
    #: provider may answer from its own cache (a rate-limited API, a quota).
    fresh: bool = True
    #: What the caller asked of each provider by name (``manage.py health``'s flags).
    options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def options_for(self, name: str) -> Mapping[str, Any]:
        return self.options.get(name) or {}


@dataclasses.dataclass
class ProviderResult:
    """A provider's answer: facts for the JSON report (JSON-ready) and checks."""

    facts: Any
    checks: list[Check]


class Provider:
    """Subclass it, set :attr:`name`, implement :meth:`enabled` and :meth:`run`."""

    #: The provider's key in the JSON report and in ``RoundContext.options``.
    name: ClassVar[str] = ""
    #: The names of the checks it reports (they may be named in READINESS_ENFORCE).
    check_names: ClassVar[tuple[str, ...]] = ()
    #: The gauges :meth:`samples` yields: {name without the prefix: (type, help)}.
    metrics: ClassVar[Mapping[str, tuple[str, str]]] = {}

    def enabled(self, context: RoundContext) -> bool:
        """Whether this round asks the provider. Runs in the caller's thread before the
        round starts: raise ImproperlyConfigured for a bad setting."""
        raise NotImplementedError

    def run(self, context: RoundContext) -> ProviderResult:
        """Ask the provider. Runs in a thread of its own; must not outlive :meth:`budget`
        by much (bound every request), and must never put a secret in a message."""
        raise NotImplementedError

    def budget(self, context: RoundContext) -> float:
        """Seconds the round waits for :meth:`run` (default: one request's timeout)."""
        return context.timeout

    def unanswered(self, context: RoundContext, why: str) -> ProviderResult:
        """The report when :meth:`run` did not return in time or raised (``why``)."""
        return ProviderResult(
            facts={"error": why},
            checks=[Check(self.name, Status.UNKNOWN, f"{self.name}: {why}")],
        )

    # --- presentation (optional) ---

    def samples(self, facts: Any) -> Iterable[Sample]:
        """Gauges for ``/metrics`` and ``--format prometheus`` (names in :attr:`metrics`)."""
        return ()

    def table_lines(self, facts: Any) -> list[str]:
        """Lines for ``manage.py health``'s table, under the members."""
        return []

    def perfdata(self, facts: Any, thresholds: Thresholds) -> list[str]:
        """Nagios perfdata items (``'label'=value[UOM];warn;crit;min;max``)."""
        return []


_lock = threading.Lock()
_registered: dict[str, Provider] = {}
_builtins: list[Provider] = []
P = TypeVar("P", bound=type[Provider])


def register(provider_class: P) -> P:
    """Class decorator: add ``provider_class`` to every round (replaces one of the same name)."""
    if not provider_class.name:
        raise ValueError(f"{provider_class.__name__} has no name")
    with _lock:
        _registered[provider_class.name] = provider_class()
    return provider_class


def unregister(name: str) -> None:
    """Remove the registered provider ``name`` (the built-in ones cannot be removed)."""
    with _lock:
        _registered.pop(name, None)


def registered() -> list[Provider]:
    """Every provider, built-in first, then in registration order."""
    with _lock:
        if not _builtins:
            _builtins.extend(import_string(path)() for path in BUILTIN)
        builtin_names = {provider.name for provider in _builtins}
        return [*_builtins, *(p for n, p in _registered.items() if n not in builtin_names)]


def prometheus_metrics(core: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """``core`` and every provider's gauges: {name: (type, help)}."""
    merged = dict(core)
    for provider in registered():
        merged.update(provider.metrics)
    return merged


class RunningProviders:
    """The providers of one round, asked in parallel; :meth:`collect` waits for them."""

    def __init__(self, context: RoundContext, providers: list[Provider]) -> None:
        self.context = context
        self.started = time.monotonic()
        self._asked = [(p, p.budget(context)) for p in providers]
        self._results: dict[str, ProviderResult | BaseException] = {}
        self._threads: dict[str, threading.Thread] = {}
        for provider, _budget in self._asked:
            # Daemon threads: one stuck past its budget never holds the exit.
            thread = threading.Thread(
                target=self._ask, args=(provider,), name=f"health-{provider.name}", daemon=True
            )
            self._threads[provider.name] = thread
            thread.start()

    def _ask(self, provider: Provider) -> None:
        try:
            self._results[provider.name] = provider.run(self.context)
        except Exception as exc:  # a bug in a provider must not end the round
            self._results[provider.name] = exc

    def budget(self) -> float:
        """The longest any provider of this round may take."""
        return max((budget for _, budget in self._asked), default=0.0)

    def collect(self) -> dict[str, ProviderResult]:
        """Each provider's result, or its :meth:`Provider.unanswered` one, by name."""
        merged: dict[str, ProviderResult] = {}
        for provider, budget in self._asked:
            thread = self._threads[provider.name]
            thread.join(max(0.0, self.started + budget - time.monotonic()))
            result = self._results.get(provider.name)
            if isinstance(result, ProviderResult):
                merged[provider.name] = result
            elif result is None:
                why = f"no answer within {budget:g} s"
                merged[provider.name] = provider.unanswered(self.context, why)
            else:
                # The class only: an exception's text may quote a secret.
                why = f"the check failed: {result.__class__.__name__}"
                merged[provider.name] = provider.unanswered(self.context, why)
        return merged


def run_providers(context: RoundContext) -> RunningProviders:
    """Start every enabled provider (a bad setting raises here, before any thread starts)."""
    return RunningProviders(context, [p for p in registered() if p.enabled(context)])
