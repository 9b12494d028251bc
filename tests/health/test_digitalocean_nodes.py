"""The nodes' CPU, memory and disk from DigitalOcean's metrics endpoints, over real local HTTPS.

A fake API over HTTPS (its CA trusted through ``SSL_CERT_FILE``, as the system
store would) lists two metrics endpoints and hands out the account's metrics
credentials; each endpoint is an HTTPS server with a certificate from another
throwaway CA (trustme, named by ``DIGITALOCEAN_METRICS_CA``) that answers
Telegraf-style Prometheus text only to those credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from django_pg_resilience.health.digitalocean_metrics import parse_prometheus_text, utilisation
from tests.health.conftest import run_health, run_health_json
from tests.health.test_digitalocean import CLUSTER, DATABASE, EVENTS, TOKEN
from tests.health.test_metrics import scrape, value
from tests.live_server import live_server

METRICS_USER = "doadmin-metrics-user-7f3a"
METRICS_PASSWORD = "metrics-password-never-shown-91c2"
BASIC = "Basic " + base64.b64encode(f"{METRICS_USER}:{METRICS_PASSWORD}".encode()).decode()


def telegraf_text(host: str, cpu_idle: float, mem_used: float, disks: dict[str, float]) -> str:
    lines = [
        "# HELP cpu_usage_idle Telegraf collected metric",
        "# TYPE cpu_usage_idle gauge",
        f'cpu_usage_idle{{cpu="cpu0",host="{host}"}} 1.5',
        f'cpu_usage_idle{{cpu="cpu-total",host="{host}"}} {cpu_idle}',
        f'mem_used_percent{{host="{host}"}} {mem_used}',
        f'mem_available_percent{{host="{host}"}} {100 - mem_used}',
    ]
    lines += [f'disk_used_percent{{host="{host}",path="{p}"}} {v}' for p, v in disks.items()]
    return "\n".join(lines) + "\n"


class Server:
    """A local HTTP(S) server; ``answer(handler)`` returns (status, headers, body)."""

    def __init__(self, answer: Any, context: ssl.SSLContext | None = None) -> None:
        self.authorizations: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.authorizations.append(self.headers.get("Authorization"))
                code, headers, body = answer(self)
                self.send_response(code)
                for name, header in headers.items():
                    self.send_header(name, header)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if context else 'http'}://localhost:{self.port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json(code: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return code, {"Content-Type": "application/json"}, json.dumps(data).encode()


class FakeProvider:
    """The API plus one metrics endpoint per node, in the shapes DigitalOcean documents."""

    def __init__(self, api_tls: ssl.SSLContext, tls: ssl.SSLContext) -> None:
        self.texts: dict[str, str] = {
            "db-node-a": telegraf_text("db-node-a", 70.0, 40.0, {"/": 20.0, "/var/lib/pg": 55.0}),
            "db-node-b": telegraf_text("db-node-b", 90.0, 30.0, {"/var/lib/pg": 50.0}),
        }
        self.metrics_mode = "ok"
        self.nodes = [Server(self._metrics(name), tls) for name in ("db-node-a", "db-node-b")]
        self.api = Server(self._api, api_tls)

    def _metrics(self, name: str) -> Any:
        def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
            if self.metrics_mode == "redirect":
                return 302, {"Location": self.api.url + "/stolen"}, b""
            if handler.headers.get("Authorization") != BASIC or self.metrics_mode == "401":
                return 401, {"WWW-Authenticate": 'Basic realm="metrics"'}, b"unauthorized"
            return 200, {"Content-Type": "text/plain; version=0.0.4"}, self.texts[name].encode()

        return answer

    def _api(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json(401, {"id": "unauthorized", "message": "Unable to authenticate you."})
        if handler.path == "/v2/databases/metrics/credentials":
            return _json(
                200,
                {
                    "credentials": {
                        "basic_auth_username": METRICS_USER,
                        "basic_auth_password": METRICS_PASSWORD,
                    }
                },
            )
        if handler.path.endswith("/events"):
            return _json(200, EVENTS)
        if handler.path == f"/v2/databases/{CLUSTER}":
            endpoints = [{"host": "localhost", "port": node.port} for node in self.nodes]
            return _json(
                200, {"database": {**DATABASE["database"], "metrics_endpoints": endpoints}}
            )
        return _json(404, {"id": "not_found", "message": "The resource was not found."})

    def close(self) -> None:
        for server in (self.api, *self.nodes):
            server.close()

    @property
    def metrics_authorizations(self) -> list[str | None]:
        return [a for node in self.nodes for a in node.authorizations]


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture
def provider(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeProvider]:
    api_ca, metrics_ca = trustme.CA(), trustme.CA()
    api_ca_file, ca_file = tmp_path / "api-ca.pem", tmp_path / "do-ca.pem"
    api_ca.cert_pem.write_to_path(str(api_ca_file))
    metrics_ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(api_ca_file))
    fake = FakeProvider(server_context(api_ca), server_context(metrics_ca))
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    # Only the provider's view: the default alias is left out of the probes.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    settings.PG_RESILIENCE = {
        "DIGITALOCEAN_API_URL": fake.api.url,
        "DIGITALOCEAN_CLUSTER": CLUSTER,
        "DIGITALOCEAN_METRICS_CA": str(ca_file),
        "HEALTH_METRICS_NAMES": "always",  # /metrics is the operator's alone here
    }
    yield fake
    fake.close()


def no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in (METRICS_USER, METRICS_PASSWORD, BASIC.split()[1], TOKEN):
            assert secret not in text


def test_node_utilisation_in_every_format(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code, report = run_health_json("--digitalocean")
    assert code == 0, report["summary"]
    nodes = {node["node"]: node for node in report["digitalocean"]["nodes"]}
    assert nodes["db-node-a"]["cpu_ratio"] == pytest.approx(0.30)
    assert nodes["db-node-a"]["memory_ratio"] == pytest.approx(0.40)
    assert nodes["db-node-a"]["disk_ratio"] == pytest.approx(0.55)  # the fullest volume
    assert nodes["db-node-b"]["cpu_ratio"] == pytest.approx(0.10)
    checks = {c["subject"]: c for c in report["checks"] if c["name"] == "digitalocean_node"}
    assert checks["db-node-a"]["status"] == "OK" and checks["db-node-b"]["status"] == "OK"
    assert provider.metrics_authorizations == [BASIC, BASIC]

    _, table = run_health("--digitalocean")
    _, prometheus = run_health("--digitalocean", "--format", "prometheus")
    _, nagios = run_health("--digitalocean", "--format", "nagios")
    assert "node db-node-a: cpu 30%, memory 40%, disk 55%" in table
    assert 'pg_resilience_digitalocean_node_disk_ratio{cluster="' in prometheus
    assert 'node="db-node-b"} 0.5' in prometheus
    assert "'do_db-node-a_cpu'=30.0%;80;95;0;100" in nagios
    no_secret_in(table, prometheus, nagios, json.dumps(report), caplog.text)


@pytest.mark.parametrize(
    ("idle", "disk", "overrides", "expected", "words"),
    [
        (10.0, 50.0, {}, "WARNING", "cpu 90% (over 80%)"),
        (2.0, 50.0, {}, "CRITICAL", "cpu 98% (over 95%)"),
        (70.0, 93.0, {}, "CRITICAL", "disk 93% (over 90%)"),
        (70.0, 93.0, {"HEALTH_NODE_DISK_CRITICAL": 0.95}, "WARNING", "disk 93% (over 80%)"),
    ],
)
def test_thresholds(
    provider: FakeProvider,
    settings: Any,
    idle: float,
    disk: float,
    overrides: dict[str, float],
    expected: str,
    words: str,
) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, **overrides}
    provider.texts["db-node-b"] = telegraf_text("db-node-b", idle, 30.0, {"/": disk})
    _, report = run_health_json("--digitalocean")
    check = next(c for c in report["checks"] if c.get("subject") == "db-node-b")
    assert check["status"] == expected
    assert words in check["message"]
    assert check["hint"] and "failover" in check["hint"]
    assert report["status"] == expected


@pytest.mark.parametrize(
    ("idle", "memory", "resource", "shown"),
    [(float("nan"), 30.0, "cpu", "nan"), (70.0, float("inf"), "memory", "inf")],
)
def test_a_value_that_is_not_a_number_is_unknown_not_ok(
    provider: FakeProvider, idle: float, memory: float, resource: str, shown: str
) -> None:
    words = f"{resource} {shown}: not a usable value"
    provider.texts["db-node-b"] = telegraf_text("db-node-b", idle, memory, {"/": 50.0})
    code, report = run_health_json("--digitalocean")
    check = next(c for c in report["checks"] if c.get("subject") == "db-node-b")
    assert check["status"] == "UNKNOWN" and words in check["message"]
    assert code == 3 and report["status"] == "UNKNOWN"
    node = next(n for n in report["digitalocean"]["nodes"] if n["node"] == "db-node-b")
    # No NaN or Infinity in the JSON (strict parsers refuse them): None, and why.
    assert node[f"{resource}_ratio"] is None and node["invalid"] == {resource: shown}
    _, prometheus = run_health("--digitalocean", "--format", "prometheus")
    assert "NaN" not in prometheus and "Inf" not in prometheus


def test_refused_credentials_are_reported_without_them(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.metrics_mode = "401"
    code, report = run_health_json("--digitalocean")
    assert code == 3
    checks = [c for c in report["checks"] if c["name"] == "digitalocean_node"]
    assert [c["status"] for c in checks] == ["UNKNOWN", "UNKNOWN"]
    assert "refused the metrics credentials (401)" in checks[0]["message"]
    outputs = [
        run_health("--digitalocean", "--format", f)[1] for f in ("table", "prometheus", "nagios")
    ]
    no_secret_in(json.dumps(report), caplog.text, *outputs)


def test_a_redirect_does_not_carry_the_credentials_away(provider: FakeProvider) -> None:
    provider.metrics_mode = "redirect"
    _, report = run_health_json("--digitalocean")
    checks = [c for c in report["checks"] if c["name"] == "digitalocean_node"]
    assert checks and all("redirect" in c["message"] for c in checks)
    stolen = [a for a in provider.api.authorizations if a and a.startswith("Basic")]
    assert stolen == []
    no_secret_in(json.dumps(report))


def test_an_untrusted_certificate_gets_no_credentials(
    provider: FakeProvider, settings: Any
) -> None:
    settings.PG_RESILIENCE = {**settings.PG_RESILIENCE, "DIGITALOCEAN_METRICS_CA": None}
    _, report = run_health_json("--digitalocean")
    checks = [c for c in report["checks"] if c["name"] == "digitalocean_node"]
    assert checks and all(c["status"] == "UNKNOWN" for c in checks)
    assert all("CERTIFICATE_VERIFY_FAILED" in c["message"] for c in checks)
    assert provider.metrics_authorizations == []  # the handshake failed before the request


def test_the_node_gauges_are_on_the_apps_metrics(provider: FakeProvider, settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.health.metrics_urls"
    with live_server() as url:
        scraped = scrape(url)
    assert value(scraped, "pg_resilience_digitalocean_node_cpu_ratio", node="db-node-a") == (
        pytest.approx(0.30)
    )
    assert value(scraped, "pg_resilience_digitalocean_node_metrics_up", node="db-node-b") == 1


def test_parse_and_utilisation_fall_back_to_available_memory() -> None:
    text = '# comment\nmem_available_percent{host="x"} 25\ncpu_usage_idle{cpu="cpu-total"} 60\n'
    samples = parse_prometheus_text(text + "garbage line\nbad_value{} NaNx\n")
    assert samples[0] == ("mem_available_percent", {"host": "x"}, 25.0)
    assert utilisation(samples) == {"cpu": 0.4, "memory": 0.75, "disk": None}
