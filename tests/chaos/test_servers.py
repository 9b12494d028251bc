"""A failover where users stand: the example shop on a real server, connections kept.

docs/backend.md recommends ``CONN_MAX_AGE=60``; production runs gunicorn's gthread workers or
an ASGI server's workers (where Django advises its pool instead of persistent connections).
None of that is in the fault matrix (a threaded test server, a connection per request) nor in
Django's test ``Client`` (which disconnects ``close_old_connections`` from
``request_started``): what Django runs before the first middleware, with a connection that
predates the outage, is only seen here.

Each test serves the shop (example_project, the drill's stack) from its own cluster, warms
every worker thread's connection, crashes the primary and keeps it down past the backend's
deadline (the breaker opens, as in a managed database's failover of tens of seconds), then
promotes the standby and moves the endpoint to it. Storefront reads and signed Shopify
order webhooks run throughout. Every request must be answered 200, or 503 with Retry-After:
never a 500, never no answer.
"""

from __future__ import annotations

import http.client
import itertools
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from django_pg_resilience.testing import free_port
from example_project.drill.stack import ROOT, WEBHOOK_SECRET, Stack
from example_project.drill.traffic import make_delivery

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

WEBHOOK_PATH = "/webhooks/shopify/orders-create"
#: A client gives up on a request after this long: then it counts as unanswered.
REQUEST_TIMEOUT = 20.0
#: The database stays down until this many requests were answered non-200 (the breaker has
#: opened: callers fail fast) or this long, whichever comes first.
OUTAGE_ANSWERS, OUTAGE_AT_MOST = 40, 15.0
#: Concurrent requests of the warm-up: more than the server's threads, so every thread of
#: every worker opens its persistent connection.
WARM_UP_CONCURRENCY = 16


@dataclass
class ServedShop(Stack):
    """The drill's stack on gunicorn (gthread) or uvicorn, with persistent connections
    (``CONN_MAX_AGE=60``) or the pool (tests/chaos/server_settings.py)."""

    server_kind: str = "gunicorn"
    connections: str = "persistent"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["DJANGO_SETTINGS_MODULE"] = "tests.chaos.server_settings"
        env["SHOP_CONNECTIONS"] = self.connections
        return env

    def server_command(self) -> list[str]:
        if self.server_kind == "gunicorn":
            return [
                sys.executable, "-m", "gunicorn",
                "-c", str(ROOT / "example_project" / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers), "--threads", str(self.threads),
            ]  # fmt: skip
        return [
            sys.executable, "-m", "uvicorn", "--factory",
            "django.core.asgi:get_asgi_application",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--no-access-log",
        ]  # fmt: skip

    def start_server(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        self._server_log = open(self.server_log, "wb")  # noqa: SIM115 - closed by stop_server
        self.server = subprocess.Popen(
            self.server_command(),
            env=self.env(),
            cwd=ROOT,
            stdout=self._server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop_server stops the whole process group
        )
        deadline = time.monotonic() + timeout
        while not self._answers("/"):
            assert self.server.poll() is None, self.server_log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{self.server_kind} did not answer"
            time.sleep(0.1)


@dataclass(frozen=True)
class Answer:
    kind: str  # "read" or "webhook"
    started: float
    finished: float
    status: int | None  # None: no answer (reset, refused, timed out)
    retry_after: str | None
    detail: str


@dataclass
class Clients:
    """Readers of the storefront and senders of signed order webhooks, on threads."""

    port: int
    readers: int = 2
    senders: int = 2
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._orders = itertools.count(2_000_001)
        self._threads = [
            threading.Thread(target=self._loop, args=(kind, n), name=f"{kind}-{n}")
            for kind, count in (("read", self.readers), ("webhook", self.senders))
            for n in range(count)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 10)
        assert not [t.name for t in self._threads if t.is_alive()]

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait_for(self, predicate: Callable[[list[Answer]], bool], timeout: float) -> bool:
        """Poll the answers until ``predicate`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def _loop(self, kind: str, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            if kind == "read":
                answer = self._request(kind, "GET", "/", None, {})
            else:
                delivery = make_delivery(WEBHOOK_SECRET, next(self._orders), rng)
                answer = self._request(kind, "POST", WEBHOOK_PATH, delivery.body, delivery.headers)
            with self._lock:
                self.answers.append(answer)
            self._stop.wait(0.02)

    def _request(
        self, kind: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            title = re.search(r"<title>(.*?)</title>", text, re.S)
            detail = " ".join((title.group(1) if title else text).split())[:100]
            status: int | None = response.status
            retry_after = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            status, retry_after, detail = None, None, type(exc).__name__
        finally:
            conn.close()
        return Answer(kind, started, time.monotonic(), status, retry_after, detail)


def warm_every_thread(port: int) -> None:
    """Bursts of concurrent storefront reads: each server thread serves some, and keeps
    its connection (CONN_MAX_AGE) when the burst is over."""

    def read(_: int) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status
        finally:
            conn.close()

    with ThreadPoolExecutor(WARM_UP_CONCURRENCY) as pool:
        for _ in range(5):
            statuses = list(pool.map(read, range(WARM_UP_CONCURRENCY)))
            assert statuses == [200] * WARM_UP_CONCURRENCY, statuses


def _tracebacks(log: Path) -> str:
    """The server's tracebacks, shortened to their frames' functions and the error."""
    text = log.read_text(errors="replace")
    found = []
    for block in re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)+.*", text):
        frames = [
            f"{Path(path).name}:{func}"
            for path, func in re.findall(r'File "([^"]+)", line \d+, in (\w+)', block)
            if not path.endswith("asyncio.py")  # Django's async-unsafe wrappers
        ]
        error = block.strip().splitlines()[-1]
        chain = " > ".join(frames[-16:])
        found.append(f"{chain}\n    {error}")
    return "\n".join(dict.fromkeys(found))[:6000]


@pytest.fixture
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServedShop]:
    kind, connections = request.param
    # issue 21's site: two processes; gthread with four threads each.
    stack = ServedShop(
        server_kind=kind,
        connections=connections,
        workers=2,
        threads=4,
        server_log=tmp_path / "server.log",
    )
    with stack:
        stack.start_cluster()
        stack.migrate_and_seed()
        stack.start_server()
        yield stack


@pytest.mark.parametrize(
    "shop",
    [
        ("gunicorn", "persistent"),  # docs/backend.md's CONN_MAX_AGE=60, gthread
        ("uvicorn", "pool"),  # ASGI with the pool, as Django advises
        ("uvicorn", "persistent"),  # ASGI with docs/backend.md's settings taken literally
    ],
    indirect=True,
    ids=lambda param: "-".join(param),
)
def test_a_crash_and_promotion_with_connections_kept_is_answered_200_or_503(
    shop: ServedShop,
) -> None:
    cluster = shop.cluster
    assert cluster is not None
    # Every server thread holds a connection to the primary; fewer clients than threads
    # then leave some of them idle, as on a real site, until the outage reaches them.
    warm_every_thread(shop.port)
    with Clients(shop.port) as clients:
        assert clients.wait_for(lambda rs: sum(r.status == 200 for r in rs) >= 10, 60)
        old, standby = cluster.primary, cluster.standbys[0]
        crashed = time.monotonic()
        cluster.kill(old)
        # Down past the deadline: requests wait it out, then the breaker fails them fast.
        failed_during_outage = clients.wait_for(
            lambda rs: sum(r.status != 200 and r.started >= crashed for r in rs) >= OUTAGE_ANSWERS,
            OUTAGE_AT_MOST,
        )
        new = cluster.promote(standby)
        shop.endpoint.point_to(new)
        moved = time.monotonic()
        recovered = clients.wait_for(
            lambda rs: sum(r.status == 200 and r.started >= moved for r in rs) >= 20, 30
        )
    answers = clients.snapshot()

    by_status: dict[int | None, int] = {}
    for answer in answers:
        by_status[answer.status] = by_status.get(answer.status, 0) + 1
    wrong = [a for a in answers if a.status not in (200, 503)]
    no_retry_after = [a for a in answers if a.status == 503 and not (a.retry_after or "").isdigit()]
    evidence = f"answers by status {by_status}; server tracebacks:\n{_tracebacks(shop.server_log)}"
    # The fault happened: the outage was felt (slow answers, 503s or worse), and it ended.
    assert failed_during_outage, f"the crash was never felt by the clients: {by_status}"
    assert recovered, f"no recovery within 30 s of the endpoint move: {evidence}"
    assert not wrong, (
        f"{len(wrong)} requests answered neither 200 nor 503, e.g. "
        f"{[(a.kind, a.status, a.detail) for a in wrong[:5]]}; {evidence}"
    )
    assert not no_retry_after, no_retry_after[:3]
