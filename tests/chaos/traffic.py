"""Traffic from threads against the live app: webhook deliveries with duplicates,
storefront reads and an ``atomic_with_retry`` worker. Bounded in count and time."""

from __future__ import annotations

import http.client
import itertools
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections
from django.dispatch import Signal

from django_pg_resilience import signals
from django_pg_resilience.errors import is_availability_error
from django_pg_resilience.testing.webhooks import shopify_request
from tests.chaos.app import CHAOS_ALIAS, SHOPIFY_SECRET, run_ledger_unit

#: Client timeout of one request, in seconds: a request still running then "hung".
REQUEST_TIMEOUT = 15.0


@dataclass(frozen=True)
class Result:
    """One request (or worker unit): when it ran and how it ended."""

    kind: str  # "webhook", "get", "worker"
    key: str
    started: float
    finished: float
    status: int | None  # HTTP status; 200 for a worker unit that returned; None: no answer
    retry_after: str | None = None
    outcome: str = ""  # the webhook's JSON status/error, or the worker's exception type

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


def order_delivery(key: str, order_id: int) -> tuple[bytes, dict[str, str]]:
    signed = shopify_request({"id": order_id}, SHOPIFY_SECRET, webhook_id=key, event_id=key)
    return signed.body, {"Content-Type": "application/json", **signed.headers}


def http_call(
    url: str,
    *,
    kind: str,
    key: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Result:
    """One HTTP request; any failure to get an answer is a Result with status None."""
    request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    started = time.monotonic()
    status: int | None
    retry_after = None
    payload = b""
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
        retry_after = error.headers.get("Retry-After")
    except (OSError, http.client.HTTPException) as error:
        status, payload = None, type(error).__name__.encode()
        if isinstance(error, socket.timeout | TimeoutError):
            payload = b"timeout"
    # HTML pages (Django's 500) are reduced to their <title> for the report.
    text = payload.decode(errors="replace")
    if "<title>" in text:
        text = text.split("<title>", 1)[1].split("</title>", 1)[0]
    outcome = " ".join(text.split())[:80]
    if payload.startswith(b"{"):
        try:
            decoded = json.loads(payload)
            outcome = str(decoded.get("status") or decoded.get("error") or decoded)
        except ValueError:
            pass
    return Result(kind, key, started, time.monotonic(), status, retry_after, outcome)


class AppSignals:
    """What the app's backend reported on CHAOS_ALIAS while the scenario ran (its signals).

    Evidence that a fault reached the app: a failover it detected, a connection it
    replaced, the SQLSTATE of a connection attempt it retried (25006: a standby).
    """

    WATCHED: dict[str, Signal] = {
        "failover_detected": signals.failover_detected,
        "reconnected": signals.reconnected,
        "connection_retry": signals.connection_retry,
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (time.monotonic(), signal name, SQLSTATE or None)
        self.events: list[tuple[float, str, str | None]] = []

    def __enter__(self) -> AppSignals:
        for name, signal in self.WATCHED.items():
            signal.connect(self._receiver(name), weak=False, dispatch_uid=f"chaos-{name}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, signal in self.WATCHED.items():
            signal.disconnect(dispatch_uid=f"chaos-{name}")

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: object, alias: str | None = None, **kwargs: object) -> None:
            if alias == CHAOS_ALIAS:
                sqlstate = kwargs.get("sqlstate")
                with self._lock:
                    self.events.append((time.monotonic(), name, sqlstate and str(sqlstate)))

        return receive

    def count(self, name: str, since: float = 0.0, sqlstate: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for moment, seen, state in self.events
                if seen == name and moment >= since and (sqlstate is None or state == sqlstate)
            )


@dataclass
class Traffic:
    """Threads sending traffic until :meth:`stop`; every request and unit is recorded."""

    base_url: str
    webhook_path: str = "/webhooks/orders"
    senders: int = 4
    readers: int = 2
    workers: int = 1
    duplicate_ratio: float = 0.3
    results: list[Result] = field(default_factory=list)
    #: Webhook keys sent at least once, with their order id.
    sent: dict[str, int] = field(default_factory=dict)
    #: Moments (time.monotonic()) a fault marks, e.g. "kill", for the report.
    marks: dict[str, float] = field(default_factory=dict)
    #: What the app's backend reported while the traffic ran.
    app: AppSignals = field(default_factory=AppSignals)
    #: What each fault step expected to see, and whether it did (see :meth:`expect`).
    evidence: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._order_ids = itertools.count(1)
        self._random = random.Random(8)

    # --- lifecycle -------------------------------------------------------

    def start(self) -> Traffic:
        loops: list[tuple[Callable[[], None], int]] = [
            (self._send_webhooks, self.senders),
            (self._read_storefront, self.readers),
            (self._run_worker, self.workers),
        ]
        for loop, count in loops:
            for n in range(count):
                thread = threading.Thread(target=loop, name=f"chaos-{loop.__name__}-{n}")
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 30)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"traffic threads still running: {alive}"

    def record(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def wait_for(self, predicate: Callable[[list[Result]], bool], timeout: float) -> bool:
        """Poll the results until ``predicate`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def successes_after(self, moment: float, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests started after ``moment`` succeeded."""
        return self.wait_for(
            lambda rs: sum(1 for r in rs if r.ok and r.started >= moment) >= count, timeout
        )

    def expect(self, happened: bool, what: str) -> bool:
        """Record whether a fault step saw its fault happen (``what``): a fault that did not
        happen fails the scenario (the "fault happened" check), whatever the invariants say."""
        with self._lock:
            self.evidence.append((what, happened))
        return happened

    # --- the loops -------------------------------------------------------

    def _next_key(self) -> tuple[str, int]:
        with self._lock:
            if self.sent and self._random.random() < self.duplicate_ratio:
                key = self._random.choice(list(self.sent))
                return key, self.sent[key]
            key, order_id = f"order-{uuid.uuid4().hex}", next(self._order_ids)
            self.sent[key] = order_id
            return key, order_id

    def _send_webhooks(self) -> None:
        while not self._stop.is_set():
            key, order_id = self._next_key()
            body, headers = order_delivery(key, order_id)
            url = self.base_url + self.webhook_path
            self.record(http_call(url, kind="webhook", key=key, body=body, headers=headers))

    def _read_storefront(self) -> None:
        while not self._stop.wait(0.02):
            self.record(http_call(self.base_url + "/store", kind="get", key=""))

    def _run_worker(self) -> None:
        try:
            while not self._stop.wait(0.01):
                token = uuid.uuid4().hex
                started = time.monotonic()
                try:
                    confirmed = run_ledger_unit(token)
                except Exception as exc:
                    # An availability error after the retry deadline is the contract;
                    # anything else is a bug the invariants report.
                    outcome = "unavailable" if is_availability_error(exc) else repr(exc)[:200]
                    self.record(
                        Result("worker", token, started, time.monotonic(), 503, "", outcome)
                    )
                else:
                    status, outcome = (200, "ok") if confirmed else (503, "unconfirmed")
                    self.record(
                        Result("worker", token, started, time.monotonic(), status, None, outcome)
                    )
        finally:
            connections[CHAOS_ALIAS].close()

    # --- after the fault -------------------------------------------------

    def redeliver_unacknowledged(self, timeout: float = 30.0) -> list[str]:
        """Like Shopify's retries: resend every key never answered 2xx until it is.

        Returns the keys still unacknowledged at the deadline (none expected).
        """
        acked = {r.key for r in self.snapshot() if r.kind == "webhook" and r.ok}
        pending = [key for key in self.sent if key not in acked]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            retry = []
            for key in pending:
                body, headers = order_delivery(key, self.sent[key])
                result = http_call(
                    self.base_url + self.webhook_path,
                    kind="redelivery",
                    key=key,
                    body=body,
                    headers=headers,
                )
                self.record(result)
                if not result.ok:
                    retry.append(key)
            pending = retry
            if pending:
                time.sleep(0.1)  # pacing a sender's retries, not synchronisation
        return pending
