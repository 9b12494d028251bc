"""The DigitalOcean token never leaks: not in errors, not to a redirect, not over plain http."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from django_pg_resilience.health.digitalocean import check_cluster
from tests.health.conftest import run_health_json
from tests.health.test_digitalocean import CLUSTER, DATABASE, EVENTS, TOKEN


class RecordingServer:
    """A local HTTP(S) server that records every Authorization header it receives.

    ``redirect_to`` makes it answer every request with a 302 to that base URL.
    """

    def __init__(self, *, redirect_to: str | None = None, cert: Path | None = None) -> None:
        self.authorizations: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.authorizations.append(self.headers.get("Authorization"))
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = EVENTS if self.path.endswith("/events") else DATABASE
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, cert.with_suffix(".key"))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A self-signed certificate for localhost, trusted by this process's default context."""
    cert = tmp_path / "localhost.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(cert.with_suffix(".key")), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert


@pytest.fixture
def servers() -> Iterator[list[RecordingServer]]:
    started: list[RecordingServer] = []
    yield started
    for server in started:
        server.close()


def test_https_to_a_trusted_server_works(
    certificate: Path, servers: list[RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = RecordingServer(cert=certificate)
    servers.append(api)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    _facts, checks = check_cluster(CLUSTER, base_url=api.url, timeout=5)
    assert checks[0].status.name == "OK", checks[0].message
    assert api.authorizations == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_redirect_is_refused_and_the_token_stays_home(
    scheme: str,
    certificate: Path,
    servers: list[RecordingServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = RecordingServer()
    api = RecordingServer(
        redirect_to=elsewhere.url.replace("localhost", "127.0.0.1"),
        cert=certificate if scheme == "https" else None,
    )
    servers.extend([elsewhere, api])
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    facts, checks = check_cluster(CLUSTER, base_url=api.url, timeout=5)
    assert len(api.authorizations) == 1
    assert elsewhere.authorizations == []  # never followed, so never sent the header
    assert checks[0].status.name == "UNKNOWN"
    assert "redirect" in facts["error"] and "DIGITALOCEAN_API_URL" in facts["error"]
    assert TOKEN not in json.dumps(facts)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://api.digitalocean.com", False),
        ("http://10.0.0.5:8080", False),
        ("ftp://api.digitalocean.com", False),
        ("api.digitalocean.com", False),
        ("http://127.0.0.1:9", True),
        ("http://localhost:9", True),
        ("http://[::1]:9", True),
    ],
)
def test_plain_http_only_to_loopback(
    url: str, accepted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    facts, _ = check_cluster(CLUSTER, base_url=url, timeout=0.5)
    refused = "must start with https://" in facts["error"]
    assert refused is not accepted, facts["error"]


@pytest.mark.parametrize(
    "token", [f"{TOKEN}\nsecret-second-line", f"dop_v1_{'a' * 20}\r\nsecond-line"]
)
def test_a_token_with_a_line_break_is_refused_and_never_printed(
    token: str,
    servers: list[RecordingServer],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api = RecordingServer()
    servers.append(api)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", token)
    settings.PG_RESILIENCE = {"DIGITALOCEAN_API_URL": api.url, "DIGITALOCEAN_CLUSTER": CLUSTER}
    _code, report = run_health_json("--digitalocean", "--timeout", "1")
    out, err = capfd.readouterr()
    printed = json.dumps(report) + out + err
    for part in token.splitlines():
        assert part not in printed
    assert api.authorizations == []
    assert "DIGITALOCEAN_TOKEN" in report["digitalocean"]["error"]
    assert "line break" in report["digitalocean"]["error"]
