"""Providers: the documented example runs as written; a provider that raises or hangs is
UNKNOWN and bounded; their answers are merged into every output."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from django_pg_resilience.checks.health import check_health
from django_pg_resilience.health import Check, Status, run_checks
from django_pg_resilience.health.providers import (
    Provider,
    ProviderResult,
    RoundContext,
    register,
    registered,
    unregister,
)
from tests.health.conftest import run_health, run_health_json

DOCS = Path(__file__).resolve().parents[2] / "docs" / "health.md"
MEMBERS = [
    {"name": "pg0", "role": "leader", "state": "running", "host": "10.0.0.5", "port": 5432,
     "timeline": 4},
    {"name": "pg1", "role": "replica", "state": "streaming", "host": "10.0.0.6", "port": 5432,
     "timeline": 4, "lag": 0},
]  # fmt: skip


class FakePatroni:
    """Serves Patroni's ``GET /cluster``."""

    def __init__(self) -> None:
        self.members: list[dict[str, Any]] = [dict(m) for m in MEMBERS]
        patroni = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"members": patroni.members, "scope": "demo"}).encode()
                self.send_response(200 if self.path == "/cluster" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def documented_example(tmp_path: Path) -> None:
    """Import the provider module of docs/health.md, as a reader would copy it."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(
        r"<!-- provider-example:start -->\n```python\n(.*?)```\n<!-- provider-example:end -->",
        text,
        re.DOTALL,
    )
    assert block, "docs/health.md lost its provider example"
    module_file = tmp_path / "patroni_health.py"
    module_file.write_text(block.group(1), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("patroni_health_from_docs", module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


@pytest.fixture
def patroni(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakePatroni]:
    fake = FakePatroni()
    settings.PATRONI_URL = fake.url
    # Only the providers' view: the default alias is left out of the probes.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    documented_example(tmp_path)
    yield fake
    unregister("patroni")
    sys.modules.pop("patroni_health_from_docs", None)
    fake.close()


def test_the_documented_example_is_a_provider_in_every_output(
    patroni: FakePatroni, settings: Any
) -> None:
    assert [p.name for p in registered()] == ["digitalocean", "pgbouncers", "patroni"]
    code, report = run_health_json()
    assert code == 0, report["summary"]
    assert report["patroni"]["members"][0]["name"] == "pg0"
    assert report["digitalocean"] is None and report["pgbouncers"] is None  # keys stay
    [check] = report["checks"]
    assert check == {**check, "name": "patroni", "status": "OK"}
    assert "leader pg0, 2 members" in check["message"]
    _, prometheus = run_health("--format", "prometheus")
    assert 'pg_resilience_patroni_members{role="leader"} 1' in prometheus
    assert "# HELP pg_resilience_patroni_members Cluster members" in prometheus

    patroni.members[1]["state"] = "starting"
    code, report = run_health_json()
    assert code == 1 and "not streaming: pg1" in report["summary"]
    patroni.members[1]["role"] = "leader"
    code, _ = run_health_json()
    assert code == 2

    # Its check may be enforced by /readyz: the system check knows the name.
    settings.PG_RESILIENCE = {"READINESS_ENFORCE": ["patroni", "pgbouncer_waiting"]}
    assert [m.id for m in check_health()] == []
    settings.PG_RESILIENCE = {"READINESS_ENFORCE": ["patronii"]}
    assert [m.id for m in check_health()] == ["pg_resilience.E403"]


class Broken(Provider):
    name = "broken"
    secret = "s3cr3t-in-the-exception"

    def enabled(self, context: RoundContext) -> bool:
        return True

    def run(self, context: RoundContext) -> ProviderResult:
        raise RuntimeError(f"could not log in with {self.secret}")


class Hanging(Provider):
    name = "hanging"
    release: ClassVar[threading.Event] = threading.Event()

    def enabled(self, context: RoundContext) -> bool:
        return True

    def run(self, context: RoundContext) -> ProviderResult:
        self.release.wait(60)
        return ProviderResult({}, [Check("hanging", Status.OK, "late")])


@pytest.fixture
def misbehaving(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    register(Broken)
    register(Hanging)
    yield
    Hanging.release.set()
    unregister("broken")
    unregister("hanging")


def test_a_provider_that_raises_or_hangs_is_unknown_and_the_round_goes_on(
    misbehaving: None,
) -> None:
    answered = threading.Event()
    reports: list[Any] = []

    def round_() -> None:
        reports.append(run_checks(timeout=0.5))
        answered.set()

    threading.Thread(target=round_, daemon=True).start()
    # The hanging provider holds its thread for 60 s; the round waits its budget only.
    assert answered.wait(30), "the round waited for a provider past its budget"
    [report] = reports
    checks = {check.name: check for check in report.checks}
    assert checks["broken"].status is Status.UNKNOWN
    assert "the check failed: RuntimeError" in checks["broken"].message
    assert Broken.secret not in json.dumps(report.as_dict())
    assert checks["hanging"].status is Status.UNKNOWN
    assert "no answer within 0.5 s" in checks["hanging"].message
    assert report.status is Status.UNKNOWN
