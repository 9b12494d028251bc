"""The DigitalOcean check against a local HTTP server speaking the documented JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from django_pg_resilience.health.digitalocean import check_cluster
from tests.health.conftest import run_health, run_health_json

TOKEN = "dop_v1_test-token-never-shown-0123456789"
CLUSTER = "9cc10173-e9ea-4176-9dbc-a4cee4c4ff30"

DATABASE = {
    "database": {
        "id": CLUSTER,
        "name": "backend",
        "engine": "pg",
        "version": "16",
        "status": "online",
        "num_nodes": 2,
        "connection": {"host": "backend-do-user.db.ondigitalocean.com", "port": 25060},
    }
}
EVENTS = {
    "events": [
        {"id": "a1", "cluster_name": "backend", "event_type": "cluster_create",
         "create_time": "2026-01-01T10:00:00Z"},
        {"id": "b2", "cluster_name": "backend", "event_type": "cluster_master_promotion",
         "create_time": "2026-11-25T09:00:00Z"},
        {"id": "c3", "cluster_name": "backend", "event_type": "cluster_master_promotion",
         "create_time": "2026-11-20T09:00:00Z"},
    ]
}  # fmt: skip


class FakeDigitalOcean:
    """Serves /v2/databases/{uuid}[/events] in one of several moods."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.status = "online"
        self.release = threading.Event()
        self.authorizations: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.authorizations.append(self.headers.get("Authorization"))
                if fake.mode == "timeout":
                    fake.release.wait(10)
                    return
                if self.headers.get("Authorization") != f"Bearer {TOKEN}" or fake.mode == "401":
                    return self.answer(401, {"id": "unauthorized", "message": "Unable to auth."})
                if not self.path.startswith(f"/v2/databases/{CLUSTER}") or fake.mode == "404":
                    return self.answer(404, {"id": "not_found", "message": "not found"})
                if fake.mode == "bad-json":
                    return self.answer(200, None, raw=b"<html>oops</html>")
                if self.path.endswith("/events"):
                    return self.answer(200, EVENTS)
                return self.answer(
                    200, {"database": {**DATABASE["database"], "status": fake.status}}
                )

            def answer(self, code: int, data: Any, raw: bytes | None = None) -> None:
                body = raw if raw is not None else json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_do(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[FakeDigitalOcean]:
    fake = FakeDigitalOcean()
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    settings.PG_RESILIENCE = {"DIGITALOCEAN_API_URL": fake.url, "DIGITALOCEAN_CLUSTER": CLUSTER}
    yield fake
    fake.close()


def ask(fake: FakeDigitalOcean, timeout: float = 2.0) -> tuple[dict[str, Any], Any]:
    facts, checks = check_cluster(CLUSTER, base_url=fake.url, timeout=timeout)
    assert len(checks) == 1
    return facts, checks[0]


def test_online_cluster_with_last_failover(fake_do: FakeDigitalOcean) -> None:
    facts, check = ask(fake_do)
    assert check.status.name == "OK"
    assert facts["status"] == "online" and facts["num_nodes"] == 2
    assert facts["last_failover"]["id"] == "b2"  # the most recent promotion
    expected_age = (
        datetime.now(timezone.utc) - datetime(2026, 11, 25, 9, tzinfo=timezone.utc)
    ).total_seconds()
    assert abs(facts["last_failover"]["age_seconds"] - expected_age) < 60
    assert fake_do.authorizations == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [("resizing", "WARNING"), ("migrating", "WARNING"), ("offline", "CRITICAL")],
)
def test_cluster_states(fake_do: FakeDigitalOcean, status: str, expected: str) -> None:
    fake_do.status = status
    _, check = ask(fake_do)
    assert check.status.name == expected
    assert status in check.message


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("401", "refused the token (401"),
        ("404", "no such database cluster (404"),
        ("bad-json", "is not JSON"),
        ("timeout", "no answer from"),
    ],
)
def test_api_failures_are_unknown_with_a_clear_message(
    fake_do: FakeDigitalOcean, mode: str, words: str
) -> None:
    fake_do.mode = mode
    facts, check = ask(fake_do, timeout=0.5)
    assert check.status.name == "UNKNOWN"
    assert words in check.message and words in facts["error"]
    assert TOKEN not in check.message


def test_missing_token_says_which_variable(
    fake_do: FakeDigitalOcean, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGITALOCEAN_TOKEN")
    _, check = ask(fake_do)
    assert check.status.name == "UNKNOWN"
    assert "DIGITALOCEAN_TOKEN" in check.message
    assert fake_do.authorizations == []


def test_command_reports_digitalocean_and_never_prints_the_token(
    fake_do: FakeDigitalOcean, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the provider's view: the default alias is left out of the probes.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    code, report = run_health_json("--digitalocean")
    assert code == 0
    assert report["digitalocean"]["status"] == "online"
    assert report["checks"][0]["name"] == "digitalocean"

    outputs = [run_health("--do-cluster", CLUSTER, "--format", fmt)[1] for fmt in
               ("table", "prometheus", "nagios")]  # fmt: skip
    assert "last failover" in outputs[0]
    assert "pg_resilience_digitalocean_online" in outputs[1]
    fake_do.mode = "401"
    code, refused = run_health("--digitalocean")
    assert code == 3 and "401" in refused
    for text in [*outputs, refused, json.dumps(report)]:
        assert TOKEN not in text
