"""Helpers for the health tests: run the command, point NODES at servers."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command


def run_health(*args: str) -> tuple[int, str]:
    """``manage.py health ARGS`` in-process: (exit status, stdout)."""
    out = io.StringIO()
    try:
        call_command("health", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def run_health_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, text = run_health(*args, "--format", "json")
    return code, json.loads(text)


def node_entry(address: Any, **extra: Any) -> dict[str, Any]:
    """A PG_RESILIENCE["NODES"] entry for a node or proxy (superuser, trust auth)."""
    return {
        "HOST": address.host,
        "PORT": str(address.port),
        "USER": "postgres",
        "NAME": "postgres",
        **extra,
    }


@pytest.fixture
def set_nodes(settings: Any) -> Callable[..., None]:
    """Set PG_RESILIENCE["NODES"] (and other keys) for the test."""

    def apply(nodes: dict[str, Any], **other: Any) -> None:
        settings.PG_RESILIENCE = {"NODES": nodes, **other}

    return apply


def check(node: dict[str, Any], name: str) -> dict[str, Any]:
    """The first check called ``name`` of a node in the JSON report."""
    found = [c for c in node["checks"] if c["name"] == name]
    assert found, f"no {name} check in {[c['name'] for c in node['checks']]}"
    return found[0]


def node_named(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in report["nodes"] if n["name"] == name)
