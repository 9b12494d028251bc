"""Every setting of the package, read in this one place.

Two sources, both read at use time (never at import) and cached until Django's
``setting_changed`` signal says otherwise:

* ``settings.PG_RESILIENCE``: a dict of app-wide settings with UPPERCASE keys,
  e.g. ``{"DEADLINE": 6.0, "RETRY_AFTER": 5, "NODES": {...}}``. The backend keys
  given here are the defaults for every alias.
* ``DATABASES[alias]["OPTIONS"]["resilience"]``: the backend keys for one alias,
  in lowercase (``{"deadline": 6.0}``), like the other OPTIONS. The backend
  removes this dict before psycopg sees OPTIONS.

Every duration is a number of seconds. A wrong name or type raises
``ImproperlyConfigured`` with the fix, and the system checks report the same
(``pg_resilience.E002``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_pg_resilience.backoff import RetryPolicy
from django_pg_resilience.breaker import BreakerSettings

__all__ = [
    "AppSettings",
    "BackendSettings",
    "app_settings",
    "backend_settings",
    "settings_errors",
]

#: The key under DATABASES[alias]["OPTIONS"] that holds the per-alias settings.
OPTIONS_KEY = "resilience"


@dataclass(frozen=True)
class BackendSettings:
    """How the backend retries for one database alias.

    The retry defaults are :class:`~django_pg_resilience.backoff.RetryPolicy`'s,
    so the pure policy and the settings cannot drift apart.
    """

    #: Longest time, in seconds, one operation (a connect, a statement) may
    #: spend waiting and retrying before it fails. Below Shopify's 5 s webhook
    #: deadline; a worker may set more.
    deadline: float = RetryPolicy.deadline
    #: Most attempts per operation, the first one included (while the breaker
    #: holds an outage, the probes other callers make count too).
    max_attempts: int = RetryPolicy.max_attempts
    #: First backoff step, in seconds; each step doubles up to ``backoff_cap``.
    backoff_base: float = RetryPolicy.base
    #: Largest backoff step, in seconds. It sets a trade-off (measured in
    #: bench/bench_backend.py's ``tradeoff`` table): the end of a held outage is
    #: noticed within ``cap`` (about cap / 3 on average), at about 2 / cap
    #: attempts per second per process while the outage is held (one probe at
    #: a time, full jitter).
    backoff_cap: float = RetryPolicy.cap
    #: Full jitter (a random wait between 0 and the step) to spread reconnects.
    jitter: bool = RetryPolicy.jitter
    #: Re-run a read (SELECT without locking) after a reconnect in autocommit.
    retry_reads: bool = True
    #: Consecutive failed attempts that open the circuit breaker early, even
    #: before ``deadline`` has passed (0: only the deadline opens it).
    breaker_threshold: int = 0
    #: Seconds between probes while the breaker is open (jittered 25 % down).
    #: About one probe a second keeps an old outage cheap and brings the site
    #: back within a second of the database (a probe plus its connect),
    #: however long the outage lasted.
    breaker_open_interval: float = 0.9
    #: Largest interval between probes while the breaker is open (the interval
    #: doubles from ``breaker_open_interval`` up to this).
    breaker_max_interval: float = 0.9
    #: An open circuit that no caller asks for (none refused since the last probe) is
    #: probed this rarely: an idle process hardly touches a database that is away.
    breaker_idle_probe_interval: float = 4.0
    #: Seconds of an outage during which the breaker probes at the backoff's pace
    #: (``backoff_cap``): the end of a blip is noticed within milliseconds.
    breaker_fast_probe_window: float = 1.0
    #: Past that window, probes of an outage still held are between half this and
    #: this apart (jittered): at most 2 / interval attempts per second per process
    #: (8/s by default) while callers wait. 0: the backoff's pace throughout.
    breaker_holding_interval: float = 0.25
    #: Connection attempts one process makes to the alias at a time, across its
    #: threads (the others wait for a slot within their deadline). After a
    #: failover every process reconnects in the same second: this bounds a
    #: fleet's storm to processes * this. 0: no bound.
    connect_concurrency: int = 2
    #: A full database (53300 "too many clients", PgBouncer's limits, a pool's
    #: queue) is busy, not down: callers retry after a full-jitter backoff from
    #: this base (seconds), doubling up to ``busy_backoff_cap``, within their
    #: deadline; the circuit breaker never opens for it.
    busy_backoff_base: float = 0.1
    busy_backoff_cap: float = 1.0
    #: libpq options the backend sets unless OPTIONS already has them.
    connect_timeout: int = 2
    keepalives_idle: int = 5
    keepalives_interval: int = 2
    keepalives_count: int = 3
    #: libpq's tcp_user_timeout is in milliseconds; this one is in seconds.
    tcp_user_timeout: float = 10.0
    #: Client-side bound, in seconds, on one round trip of a statement (sending it
    #: and reading its whole result); the connection is closed when it passes.
    #: 0 (default) is off: long queries are legitimate, and keepalives plus
    #: tcp_user_timeout already notice a dead peer. Set it when a silent network
    #: path must fail within a known time even while data is acknowledged.
    io_timeout: float = 0.0
    #: A statement that has waited this long for its answer (seconds) triggers
    #: a liveness check of its server over a fresh connection: is my session
    #: still running there? Dead, unreachable or replaced: the wait is
    #: abandoned like a lost connection. Alive: it keeps waiting, however long
    #: the query runs. 0 turns the check off. Statements quicker than this
    #: never pay for it. With ``deadline`` (4 s) it bounds a request in flight
    #: at a fault to 4.9 s, inside a sender's 5 s (Shopify's).
    liveness_after: float = 0.9
    #: Seconds between two liveness checks of one server by this process (one
    #: check serves every statement waiting on that server).
    liveness_interval: float = 1.0
    #: The alias must reach a writable primary: a session that lands on a standby
    #: (read-only) is closed and retried. None (default): True unless OPTIONS
    #: ``target_session_attrs`` asks for a read-only or standby server.
    read_write: bool | None = None

    @functools.cached_property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of one operation on the alias (built once per settings)."""
        return RetryPolicy(
            deadline=self.deadline,
            max_attempts=self.max_attempts,
            base=self.backoff_base,
            cap=self.backoff_cap,
            jitter=self.jitter,
        )

    @functools.cached_property
    def breaker_settings(self) -> BreakerSettings:
        """The alias's circuit-breaker settings (built once per settings)."""
        return BreakerSettings(
            open_interval=self.breaker_open_interval,
            max_interval=max(self.breaker_max_interval, self.breaker_open_interval),
            threshold=self.breaker_threshold,
            young_outage=self.breaker_fast_probe_window,
            holding_interval=self.breaker_holding_interval,
            idle_interval=self.breaker_idle_probe_interval,
        )

    @functools.cached_property
    def busy_policy(self) -> RetryPolicy:
        """The backoff of a caller that met a full database (built once per settings)."""
        return RetryPolicy(
            deadline=self.deadline,
            max_attempts=0,
            base=self.busy_backoff_base,
            cap=max(self.busy_backoff_cap, self.busy_backoff_base),
            jitter=True,
        )


@dataclass(frozen=True)
class AppSettings:
    """App-wide settings (``settings.PG_RESILIENCE``, UPPERCASE keys)."""

    # --- middleware ---
    #: Retry-After, in seconds, when the breaker does not know better. Never 0.
    RETRY_AFTER: int = 5
    #: Paths that always get the JSON 503 (APIs), besides Accept: application/json.
    JSON_PATH_PREFIXES: tuple[str, ...] = ("/api/",)

    # --- webhooks ---
    #: Largest webhook body accepted, in bytes (413 above).
    WEBHOOK_MAX_BODY_SIZE: int = 1024 * 1024
    #: Seconds a durable acknowledgement waits for a standby to flush the commit.
    WEBHOOK_DURABLE_ACK_TIMEOUT: float = 2.0
    #: Attempts the async worker makes before an event is marked failed.
    WEBHOOK_MAX_ATTEMPTS: int = 8
    #: Seconds before the async worker's first retry of a failed handler; doubles
    #: per attempt (capped at an hour): 8 attempts span about 20 minutes.
    WEBHOOK_RETRY_BACKOFF: float = 10.0
    #: Seconds a delivery waits for an in-flight delivery of the same event (the
    #: row lock) before answering 503 + Retry-After; also bounds lock waits in
    #: the handler, which runs in the same transaction. Well under the senders'
    #: deadlines (Shopify: 5 s). 0 waits without bound.
    WEBHOOK_LOCK_TIMEOUT: float = 2.0
    #: Seconds the async worker holds an event it is processing; a worker that
    #: dies leaves the event to another one after that.
    WEBHOOK_WORKER_LEASE: float = 300.0

    # --- background jobs (contrib.celery) ---
    #: Seconds a job may keep failing only because the database is unavailable
    #: (down, busy, an uncertain commit, a conflict), counted from its first such
    #: failure, before it is parked (``ParkedJob``) and fails with
    #: ``OutageBudgetExceeded``. Longer than a replaced node takes (minutes).
    JOB_OUTAGE_BUDGET: float = 3600.0
    #: Largest wait, in seconds, between two tries of a job in an outage. A job
    #: retries about ``2 * outage / cap`` times; it resumes within ``cap`` of the
    #: database answering. At least 1.
    JOB_OUTAGE_RETRY_CAP: float = 60.0

    # --- health ---
    #: Extra nodes to check besides the aliases: {name: DSN or DATABASES-style dict}.
    NODES: Mapping[str, Any] = field(default_factory=dict)
    #: Token that unlocks the detailed readyz output (header X-Health-Token).
    HEALTH_TOKEN: str | None = None
    #: Connect and statement timeout of each health probe, in seconds.
    HEALTH_TIMEOUT: float = 2.0
    HEALTH_LAG_WARNING: float = 10.0
    HEALTH_LAG_CRITICAL: float = 60.0
    HEALTH_CONNECTIONS_WARNING: float = 0.80
    HEALTH_CONNECTIONS_CRITICAL: float = 0.95
    HEALTH_OLDEST_TRANSACTION_WARNING: float = 300.0
    #: A primary with no streaming standby is a WARNING (False for a single-node database).
    HEALTH_REQUIRE_STANDBY: bool = True
    #: DigitalOcean Managed Database cluster UUID and API base URL.
    DIGITALOCEAN_CLUSTER: str | None = None
    DIGITALOCEAN_API_URL: str = "https://api.digitalocean.com"

    # --- health endpoints and metrics ---
    #: Seconds the cluster report is reused by /readyz, /healthz/cluster and /metrics:
    #: at most one probe round per period per process, whatever the traffic (never
    #: more than one a second, whatever this says).
    HEALTH_CACHE_SECONDS: float = 5.0
    #: Seconds after which a cluster report vouches for nothing: past it (rounds that
    #: fail, or hang), the endpoints say UNKNOWN and an enforced readiness check fails.
    HEALTH_MAX_REPORT_AGE: float = 30.0
    #: Seconds the endpoints' rounds reuse the DigitalOcean API's answer (each asking
    #: costs 2-4 requests of the token's 5,000 an hour); manage.py health always asks.
    DIGITALOCEAN_CACHE_SECONDS: float = 60.0
    #: Whether the cluster gauges on /metrics carry names (hosts, standbys, replication
    #: slots, the cluster UUID) or pseudonyms: "token" (names only for a scrape that
    #: carries HEALTH_TOKEN), "always" (a /metrics only the operator can reach), "never".
    HEALTH_METRICS_NAMES: str = "token"
    #: Cluster checks whose CRITICAL or UNKNOWN makes /readyz answer 503 (e.g.
    #: ``("reachable",)``; ``"cluster"`` for the overall status). Empty (default):
    #: the database's state is reported by /readyz, never enforced.
    READINESS_ENFORCE: tuple[str, ...] = ()
    #: A file whose existence makes /readyz answer 503 (draining, e.g. from a preStop hook).
    READINESS_DRAIN_FILE: str | None = None
    #: The path Prometheus scrapes; under PROMETHEUS_MULTIPROC_DIR a request to it
    #: refreshes the cluster gauges first. Served during maintenance. None: no such path.
    HEALTH_METRICS_PATH: str | None = "/metrics"
    # --- replica router ---
    #: The read/write alias the router sends writes, transactions and fallback reads to.
    REPLICA_PRIMARY: str = "default"
    #: Replica aliases the router reads from; empty: every alias whose
    #: OPTIONS["resilience"] says ``read_write: False``.
    REPLICA_ALIASES: tuple[str, ...] = ()
    #: A replica more than this many seconds behind the primary gets no reads.
    MAX_REPLICA_LAG: float = 1.0
    #: Seconds a replica's measured lag and position are reused before they are
    #: measured again (in the background: a request never waits for it).
    REPLICA_CHECK_INTERVAL: float = 0.5
    #: Statement timeout of the lag probe, in seconds (its connect timeout is
    #: libpq's smallest, 2 s, or this when larger).
    REPLICA_CHECK_TIMEOUT: float = 0.5
    #: Where a client's last write position is kept between requests:
    #: "cookie" (signed), "session", or "request" (within one request only).
    READ_YOUR_WRITES: str = "cookie"
    #: Name of the signed cookie (READ_YOUR_WRITES = "cookie") or session key.
    READ_YOUR_WRITES_KEY: str = "pg_resilience_wal"
    #: Seconds a client's write position is kept; past it, MAX_REPLICA_LAG alone
    #: bounds what the client reads.
    READ_YOUR_WRITES_MAX_AGE: float = 300.0
    #: The cookie's Secure flag. None (default): as the site's own cookies
    #: (SESSION_COOKIE_SECURE or CSRF_COOKIE_SECURE), or when the request is https;
    #: True: always; False: only when the request is https.
    READ_YOUR_WRITES_COOKIE_SECURE: bool | None = None

    # --- provider node metrics and PgBouncer ---
    #: Read the DigitalOcean nodes' CPU, memory and disk use from the cluster's
    #: metrics endpoints when the DigitalOcean check runs.
    DIGITALOCEAN_NODE_METRICS: bool = True
    #: A PEM CA file for the metrics endpoints' certificate (None: the system's CAs).
    DIGITALOCEAN_METRICS_CA: str | None = None
    #: Node utilisation (0.8 = 80 %) where a node turns WARNING / CRITICAL.
    HEALTH_NODE_CPU_WARNING: float = 0.80
    HEALTH_NODE_CPU_CRITICAL: float = 0.95
    HEALTH_NODE_MEMORY_WARNING: float = 0.85
    HEALTH_NODE_MEMORY_CRITICAL: float = 0.95
    HEALTH_NODE_DISK_WARNING: float = 0.80
    HEALTH_NODE_DISK_CRITICAL: float = 0.90
    #: PgBouncers whose admin console ``health`` reads: {name: libpq DSN}.
    PGBOUNCERS: Mapping[str, str] = field(default_factory=dict)
    #: Seconds the longest-waiting PgBouncer client may wait before WARNING / CRITICAL.
    HEALTH_PGBOUNCER_WAIT_WARNING: float = 1.0
    HEALTH_PGBOUNCER_WAIT_CRITICAL: float = 5.0
    # --- planned maintenance (manage.py maintenance on|off|status) ---
    #: The file whose existence turns maintenance on for every process of this
    #: machine. None: ``<settings.BASE_DIR>/.pg-resilience-maintenance`` (required
    #: when settings has no BASE_DIR; never a shared temp directory).
    MAINTENANCE_FILE: str | None = None
    #: A CACHES alias holding the switch instead of the file (several machines or
    #: containers). Must be shared by all processes and not the database cache.
    MAINTENANCE_CACHE: str | None = None
    #: Seconds a process reuses what it last read of the switch.
    MAINTENANCE_CHECK_INTERVAL: float = 0.5
    #: Retry-After, in seconds, of the maintenance 503 when ``on`` is not given one.
    MAINTENANCE_RETRY_AFTER: int = 30
    #: Client addresses or networks (CIDR) that get the site during maintenance.
    #: Matched against REMOTE_ADDR only, never X-Forwarded-For.
    MAINTENANCE_BYPASS_IPS: tuple[str, ...] = ()
    #: Path prefixes served during maintenance (whole segments: "/healthz" is not "/healthzz").
    MAINTENANCE_BYPASS_PATHS: tuple[str, ...] = ("/healthz", "/readyz")
    #: Staff users get the site during maintenance (when known without the database),
    #: read-only: GET, HEAD and OPTIONS.
    MAINTENANCE_BYPASS_STAFF: bool = True
    #: Path prefixes (whole segments) where staff may also write during maintenance.
    MAINTENANCE_STAFF_WRITE_PATHS: tuple[str, ...] = ()
    #: A switch that cannot be read (permissions, I/O error, not a regular file)
    #: keeps what the process last read; True: it means maintenance is on.
    MAINTENANCE_ON_WHEN_UNREADABLE: bool = False
    #: Webhook views are served during maintenance; False (default): they get the
    #: bare 503 with Retry-After, and the senders retry later.
    MAINTENANCE_BYPASS_WEBHOOKS: bool = False


_BACKEND_FIELDS = {f.name: f for f in dataclasses.fields(BackendSettings)}
_APP_FIELDS = {f.name: f for f in dataclasses.fields(AppSettings)}


#: Settings that are True, False or None (None: decided from other settings).
_OPTIONAL_BOOLS = frozenset({"read_write", "read_your_writes_cookie_secure"})


def _coerce(owner: str, name: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; say how to fix it if wrong."""
    if isinstance(default, bool) or (default is None and name.lower() in _OPTIONAL_BOOLS):
        ok = isinstance(value, bool) or value is None
        expected_text = "True or False"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        expected_text = "a whole number >= 0"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        expected_text = "a number of seconds >= 0"
        if ok:
            value = float(value)
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        expected_text = "a list of strings"
        if ok:
            value = tuple(value)
    elif isinstance(default, Mapping):
        ok = isinstance(value, Mapping)
        expected_text = "a dict"
    else:  # str | None
        ok = value is None or isinstance(value, str)
        expected_text = "a string or None"
    if not ok:
        raise ImproperlyConfigured(f"{owner}[{name!r}] is {value!r}; it must be {expected_text}.")
    return value


def _backend_from(owner: str, values: Mapping[str, Any], base: BackendSettings) -> BackendSettings:
    changes = {}
    for key, value in values.items():
        name = key.lower()
        if name not in _BACKEND_FIELDS:
            known = ", ".join(sorted(_BACKEND_FIELDS))
            raise ImproperlyConfigured(f"{owner} has an unknown key {key!r}. Known keys: {known}.")
        changes[name] = _coerce(owner, key, value, getattr(base, name))
    return dataclasses.replace(base, **changes)


@functools.lru_cache(maxsize=1)
def app_settings() -> AppSettings:
    """The app-wide settings, validated."""
    raw = getattr(settings, "PG_RESILIENCE", {}) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("settings.PG_RESILIENCE must be a dict.")
    defaults = AppSettings()
    changes = {}
    for key, value in raw.items():
        if key.lower() in _BACKEND_FIELDS:
            continue  # a backend default, read by backend_settings()
        if key not in _APP_FIELDS:
            known = ", ".join(sorted([*_APP_FIELDS, *(k.upper() for k in _BACKEND_FIELDS)]))
            raise ImproperlyConfigured(
                f"settings.PG_RESILIENCE has an unknown key {key!r}. Known keys: {known}."
            )
        changes[key] = _coerce("settings.PG_RESILIENCE", key, value, getattr(defaults, key))
    if changes.get("RETRY_AFTER", 1) < 1:
        raise ImproperlyConfigured("settings.PG_RESILIENCE['RETRY_AFTER'] must be at least 1.")
    if changes.get("JOB_OUTAGE_RETRY_CAP", 1.0) < 1.0:
        raise ImproperlyConfigured(
            "settings.PG_RESILIENCE['JOB_OUTAGE_RETRY_CAP'] must be at least 1 (seconds): a job's "
            "first retry in an outage waits about a second, and the cap bounds the later ones."
        )
    return dataclasses.replace(defaults, **changes)


@functools.lru_cache(maxsize=1)
def _backend_defaults() -> BackendSettings:
    raw = getattr(settings, "PG_RESILIENCE", {}) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured("settings.PG_RESILIENCE must be a dict.")
    values = {k: v for k, v in raw.items() if k.lower() in _BACKEND_FIELDS}
    return _backend_from("settings.PG_RESILIENCE", values, BackendSettings())


def backend_settings(alias: str, settings_dict: Mapping[str, Any] | None = None) -> BackendSettings:
    """The backend settings of ``alias``: its OPTIONS["resilience"] over PG_RESILIENCE.

    ``settings_dict`` is the alias's DATABASES entry; by default it is looked up.
    """
    if settings_dict is None:
        settings_dict = settings.DATABASES[alias]
    options: Mapping[str, Any] = settings_dict.get("OPTIONS") or {}  # type: ignore[assignment]
    per_alias = options.get(OPTIONS_KEY) or {}
    if not isinstance(per_alias, Mapping):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}] must be a dict."
        )
    settings_ = _backend_from(
        f"DATABASES[{alias!r}]['OPTIONS'][{OPTIONS_KEY!r}]", per_alias, _backend_defaults()
    )
    if settings_.read_write is None:
        wanted = str(options.get("target_session_attrs") or "").lower()
        read_write = wanted not in _READ_ONLY_SESSION_ATTRS
        settings_ = dataclasses.replace(settings_, read_write=read_write)
    return settings_


#: target_session_attrs values that ask for a server that need not be a primary.
_READ_ONLY_SESSION_ATTRS = frozenset({"read-only", "standby", "prefer-standby"})


def settings_errors() -> list[str]:
    """Every configuration error, as messages (for the system checks)."""
    errors = []
    for reader in (app_settings, _backend_defaults):
        try:
            reader()
        except ImproperlyConfigured as exc:
            errors.append(str(exc))
    for alias, settings_dict in settings.DATABASES.items():
        try:
            backend_settings(alias, settings_dict)
        except ImproperlyConfigured as exc:
            errors.append(str(exc))
    return errors


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "DATABASES"):
        app_settings.cache_clear()
        _backend_defaults.cache_clear()
