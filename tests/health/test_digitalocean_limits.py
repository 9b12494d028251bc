"""The DigitalOcean client is bounded: in time as a whole (a server that drips) and in size."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from django_pg_resilience.health.digitalocean import check_cluster
from django_pg_resilience.health.digitalocean_http import MAX_BODY_BYTES
from tests.health.test_digitalocean import CLUSTER, DATABASE, TOKEN


class MisbehavingApi:
    """An API that drips its answer a byte at a time, or answers far too much."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.stop = threading.Event()
        self.requests = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests += 1
                body = json.dumps(DATABASE).encode()
                if api.mode == "huge":
                    padding = " " * (MAX_BODY_BYTES + 1)
                    body = body[:-1] + padding.encode() + b"}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if api.mode == "huge-chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b" " * 65536
                    for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                # "drip": a promise of a long body, kept a byte at a time: every read
                # gets something well within any per-read timeout.
                length = 100_000 if api.mode == "drip" else len(body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if api.mode != "drip":
                    self.wfile.write(body)
                    return
                for byte in body * 1000:
                    if api.stop.wait(0.05):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up: what the test wants
                        return

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = MisbehavingApi(request.param)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    yield server
    server.close()


@pytest.mark.parametrize("api", ["drip"], indirect=True)
def test_a_dripping_answer_is_cut_at_the_timeout(api: MisbehavingApi) -> None:
    answers: list[Any] = []
    asker = threading.Thread(
        target=lambda: answers.append(check_cluster(CLUSTER, base_url=api.url, timeout=1.0)),
        daemon=True,
    )
    asker.start()
    # Generous: the bound is 1 s; without it the answer takes 100,000 x 0.05 s.
    asker.join(60)
    assert not asker.is_alive(), "the request was not cut: a dripping server keeps the thread"
    [(facts, checks)] = answers
    assert checks[0].status.name == "UNKNOWN"
    assert "no answer from" in facts["error"] and "within 1 s" in facts["error"]
    assert api.requests == 1


@pytest.mark.parametrize("api", ["huge", "huge-chunked"], indirect=True)
def test_an_answer_larger_than_the_cap_is_refused(api: MisbehavingApi) -> None:
    facts, checks = check_cluster(CLUSTER, base_url=api.url, timeout=10.0)
    assert checks[0].status.name == "UNKNOWN"
    assert f"more than {MAX_BODY_BYTES // 1024} kB" in facts["error"]
    assert TOKEN not in facts["error"]
