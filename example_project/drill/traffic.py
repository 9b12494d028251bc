"""HTTP traffic for the drill, run in a process of its own (as real clients are).

Readers GET the storefront; senders POST Shopify-signed ``orders/create``
webhooks. About one delivery in five is a redelivery of a webhook already sent,
and some new orders are delivered twice at the same instant. A sender treats a
delivery as Shopify does: anything but a 2xx (or no answer within 5 s) is
retried after a backoff, a bounded number of times, so that every order is
either acknowledged or reported as given up. For a long outage (``--outage``)
the senders follow Shopify's own schedule, 8 retries over 4 hours, each wait
twice the previous one, squeezed into the outage's length
(:func:`shopify_wait`); they keep retrying at the last interval until the
drain ends.

Every HTTP attempt is recorded; the orchestrator turns the records into the
report. Times are ``time.monotonic()`` values, which every process of the
machine shares.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import random
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from example_project.drill.report import STATUS_COLUMNS, status_class

#: What Shopify allows a webhook endpoint before it counts the delivery as failed.
SHOPIFY_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
#: The first delivery and Shopify's 8 retries (with a drill-sized backoff, not 4 hours).
MAX_ATTEMPTS = 9
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 2.0
#: Status recorded when no HTTP answer came back.
NO_ANSWER = 0
#: Shopify retries a failed delivery 8 times over 4 hours, doubling the wait.
SHOPIFY_RETRIES = 8


def shopify_wait(retry: int, span: float) -> float:
    """The wait before retry ``retry`` (1-based) of Shopify's schedule squeezed into ``span`` s.

    The waits double (1, 2, 4 ... 128 units; 255 units in all: ``span``); past
    the eighth retry the last wait repeats.
    """
    unit = span / (2**SHOPIFY_RETRIES - 1)
    return unit * 2 ** (min(retry, SHOPIFY_RETRIES) - 1)


#: Progress counters shared with the orchestrator, by index.
PROGRESS_KEYS = STATUS_COLUMNS


@dataclass(frozen=True)
class TrafficConfig:
    host: str
    port: int
    secret: str
    readers: int
    senders: int
    #: monotonic time at which traffic stops starting new work
    stop_at: float
    #: monotonic time after which failed deliveries are no longer retried
    drain_until: float
    results_path: str
    redelivery_rate: float = 0.2
    concurrent_duplicate_rate: float = 0.1
    think_time: float = 0.05
    seed: int = 7
    #: Seconds Shopify's schedule is squeezed into (:func:`shopify_wait`); the
    #: senders then retry until ``drain_until``, however many times. None: the
    #: drill's short schedule (:data:`MAX_ATTEMPTS`, doubling from 0.25 s to 2 s).
    shopify_span: float | None = None


@dataclass
class Attempt:
    kind: str  # "read" or "webhook"
    start: float
    end: float
    status: int
    answer: str = ""  # webhooks: "processed" / "duplicate" / "error" code
    order_id: int = 0
    delivery: str = ""
    attempt: int = 1
    redelivery: bool = False


@dataclass
class Delivery:
    webhook_id: str
    order_id: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def sign(secret: str, body: bytes) -> str:
    """Shopify's X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def make_delivery(secret: str, order_id: int, rng: random.Random) -> Delivery:
    quantities = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))]
    items = [
        {"id": order_id * 10 + i, "quantity": quantity, "price": "9.99"}
        for i, quantity in enumerate(quantities)
    ]
    payload = {
        "id": order_id,
        "email": f"customer{order_id}@example.com",
        "total_price": f"{9.99 * sum(quantities):.2f}",
        "currency": "USD",
        "line_items": items,
    }
    body = json.dumps(payload).encode()
    webhook_id = str(uuid.UUID(int=rng.getrandbits(128)))
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": "drill.myshopify.com",
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": str(uuid.UUID(int=rng.getrandbits(128))),
        "X-Shopify-Triggered-At": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "X-Shopify-Hmac-Sha256": sign(secret, body),
    }
    return Delivery(webhook_id=webhook_id, order_id=order_id, body=body, headers=headers)


class Traffic:
    """The readers and senders of one drill run (see the module docs)."""

    def __init__(self, config: TrafficConfig, progress: Any = None) -> None:
        self.config = config
        self.progress = progress
        self.attempts: list[Attempt] = []
        self.deliveries: list[Delivery] = []
        self.gave_up: list[str] = []
        self._lock = threading.Lock()
        self._next_order = 1_000_001
        self._rng = random.Random(config.seed)

    # --- HTTP ---------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.config.host, self.config.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return NO_ANSWER, b""
        finally:
            conn.close()

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)
        if self.progress is not None:
            index = PROGRESS_KEYS.index(status_class(attempt.status))
            with self.progress.get_lock():
                self.progress[index] += 1

    # --- readers ------------------------------------------------------------

    def read_loop(self) -> None:
        while time.monotonic() < self.config.stop_at:
            start = time.monotonic()
            status, _ = self._request("GET", "/", None, {"Accept": "text/html"}, READ_TIMEOUT)
            self._record(Attempt("read", start, time.monotonic(), status))
            time.sleep(self.config.think_time)

    # --- senders ------------------------------------------------------------

    def _new_delivery(self) -> Delivery:
        with self._lock:
            order_id = self._next_order
            self._next_order += 1
            delivery = make_delivery(self.config.secret, order_id, self._rng)
            self.deliveries.append(delivery)
        return delivery

    def _wait_before(self, retry: int, backoff: float) -> float:
        span = self.config.shopify_span
        if span is not None:
            return shopify_wait(retry, span) * (0.9 + random.random() / 10)
        return backoff * (0.5 + random.random() / 2)

    def deliver(self, delivery: Delivery, *, redelivery: bool) -> None:
        """Send until acknowledged (2xx), as Shopify would, within the drill's bounds."""
        backoff = BACKOFF_FIRST
        attempts = MAX_ATTEMPTS if self.config.shopify_span is None else 10**9
        for number in range(1, attempts + 1):
            start = time.monotonic()
            status, body = self._request(
                "POST",
                "/webhooks/shopify/orders-create",
                delivery.body,
                delivery.headers,
                SHOPIFY_TIMEOUT,
            )
            answer = ""
            with contextlib.suppress(ValueError, AttributeError):
                parsed = json.loads(body)
                answer = str(parsed.get("status") or parsed.get("error") or "")
            self._record(
                Attempt(
                    "webhook",
                    start,
                    time.monotonic(),
                    status,
                    answer,
                    delivery.order_id,
                    delivery.webhook_id,
                    number,
                    redelivery,
                )
            )
            if 200 <= status < 300:
                return
            wait = self._wait_before(number, backoff)
            if number == attempts or time.monotonic() + wait > self.config.drain_until:
                break
            time.sleep(wait)
            backoff = min(backoff * 2, BACKOFF_CAP)
        with self._lock:
            self.gave_up.append(delivery.webhook_id)

    def send_loop(self, rng: random.Random) -> None:
        config = self.config
        while time.monotonic() < config.stop_at:
            with self._lock:
                sent = len(self.deliveries)
            if sent and rng.random() < config.redelivery_rate:
                with self._lock:
                    delivery = self.deliveries[rng.randrange(sent)]
                self.deliver(delivery, redelivery=True)
            elif rng.random() < config.concurrent_duplicate_rate:
                self._deliver_twice_at_once(self._new_delivery())
            else:
                self.deliver(self._new_delivery(), redelivery=False)
            time.sleep(config.think_time)

    def _deliver_twice_at_once(self, delivery: Delivery) -> None:
        barrier = threading.Barrier(2)

        def twin() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            self.deliver(delivery, redelivery=True)

        thread = threading.Thread(target=twin, daemon=True)
        thread.start()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        self.deliver(delivery, redelivery=False)
        thread.join()

    # --- run ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        threads = [
            threading.Thread(target=self.read_loop, name=f"reader-{i}", daemon=True)
            for i in range(self.config.readers)
        ]
        threads += [
            threading.Thread(
                target=self.send_loop,
                args=(random.Random(self.config.seed * 1000 + i),),
                name=f"sender-{i}",
                daemon=True,
            )
            for i in range(self.config.senders)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            # Senders finish their retries by drain_until; anything later is a hung socket.
            thread.join(timeout=max(0.0, self.config.drain_until - time.monotonic()) + 30)
        with self._lock:
            return {
                "attempts": [asdict(a) for a in self.attempts],
                "deliveries": [
                    {"webhook_id": d.webhook_id, "order_id": d.order_id} for d in self.deliveries
                ],
                "gave_up": list(self.gave_up),
                "stuck_threads": sum(1 for t in threads if t.is_alive()),
            }


def run_process(config: TrafficConfig, progress: Any, ready: Event) -> None:
    """Entry point of the traffic process: run, then write the records to ``results_path``.

    ``progress`` is a shared ``multiprocessing.Array`` of counters, one per
    :data:`PROGRESS_KEYS`, that the orchestrator prints every second.
    """
    # Ctrl-C is the orchestrator's to handle: it stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ready.set()
    result = Traffic(config, progress).run()
    tmp = Path(config.results_path + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(config.results_path)
