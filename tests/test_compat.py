"""The private APIs listed in backend/compat.py still exist in the installed releases.

CI runs this on every supported Django line, so a release that renames, removes or
re-signs one of them fails here, with its name, instead of in a failover.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.utils.log import log_response

from django_pg_resilience.backend import compat

PACKAGE = Path(compat.__file__).resolve().parent.parent


def _resolve(dotted: str) -> Any:
    module_name, _, rest = dotted.partition(".")
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"cannot import {dotted} ({module_name}{rest})")


def _method_source(owner: Any, name: str) -> str:
    member = inspect.getattr_static(owner, name)
    function = member.fget if isinstance(member, property) else member
    return inspect.getsource(function)


def _instance_of(owner: str) -> Any:
    """A live instance of ``owner``, built without touching the network."""
    if owner == "django.http.HttpRequest":
        return RequestFactory().post("/", data=b"{}", content_type="application/json")
    if owner == "django.db.utils.ConnectionHandler":
        return connections
    return connections["default"]  # a DatabaseWrapper: built, not connected


@pytest.mark.parametrize("api", compat.PRIVATE_APIS, ids=lambda api: f"{api.owner}.{api.name}")
def test_private_api_is_still_there(api: compat.PrivateApi) -> None:
    owner = _resolve(api.owner)
    where = f"{api.owner}.{api.name} ({api.why})"
    if api.kind == "instance":
        instance = _instance_of(api.owner)
        assert isinstance(instance, owner)
        assert hasattr(instance, api.name), f"{where} is no longer set by __init__"
        return
    assert hasattr(owner, api.name), f"{where} is gone"
    value = getattr(owner, api.name)
    if api.kind == "class":
        assert inspect.isclass(value), f"{where} is no longer a class"
    elif api.kind == "method":
        assert callable(value), f"{where} is no longer a method"
        parameters = inspect.signature(value).parameters
        missing = [name for name in api.parameters if name not in parameters]
        assert not missing, f"{where}: the signature lost {missing}: {inspect.signature(value)}"


@pytest.mark.parametrize(
    "copied", compat.COPIED_BODIES, ids=lambda copied: f"{copied.owner}.{copied.name}"
)
def test_copied_django_bodies_are_unchanged(copied: compat.CopiedBody) -> None:
    import django

    source = _method_source(_resolve(copied.owner), copied.name)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest in copied.digests, (
        f"Django {django.get_version()} changed {copied.owner}.{copied.name}, whose body the "
        f"backend copies: review the copy, then add {digest} to compat.COPIED_BODIES."
    )


def test_the_re_exported_names_are_the_upstream_objects() -> None:
    import psycopg_pool.pool
    from psycopg import errors

    assert compat.WaitTimeout is errors._WaitTimeout
    assert compat.AddConnection is psycopg_pool.pool.AddConnection
    assert issubclass(compat.CursorDebugWrapper, compat.CursorWrapper)


def test_the_minimum_psycopg_has_what_the_package_uses() -> None:
    """pyproject's floor must match the first release that has them (see compat's docs)."""
    import psycopg
    from packaging.version import Version

    assert Version(psycopg.__version__) >= Version("3.3.6")
    assert "timeout" in inspect.signature(psycopg.Connection.wait).parameters


# --- The door: each named function against the installed Django (5.2 and 6.1 in CI) ---


def test_connection_pools_is_the_backends_own_registry() -> None:
    pools = compat.connection_pools(connections["default"])
    assert isinstance(pools, dict)
    assert pools is type(connections["default"])._connection_pools


@pytest.mark.django_db
def test_configure_connection_runs_djangos_per_connection_setup() -> None:
    wrapper = connections["default"]
    raw = wrapper.get_new_connection(wrapper.get_connection_params())
    try:
        raw.execute("SET TIME ZONE 'Asia/Tokyo'")
        compat.configure_connection(wrapper, raw)
        (zone,) = raw.execute("SHOW TIME ZONE").fetchone()
    finally:
        raw.close()
    assert zone == "UTC"  # Django's setup puts the connection back in the project's zone


@pytest.mark.django_db
def test_open_cursor_goes_through_the_wrappers_cursor_path() -> None:
    cursor = compat.open_cursor(connections["default"])
    try:
        cursor.execute("SELECT 41 + 1")
        assert cursor.fetchone() == (42,)
    finally:
        cursor.close()


def test_request_read_started_follows_the_stream() -> None:
    request = RequestFactory().post("/", data=b"{}", content_type="application/json")
    assert compat.request_read_started(request) is False
    request.read(1)
    assert compat.request_read_started(request) is True


def test_body_already_read_follows_request_body() -> None:
    request = RequestFactory().post("/", data=b"abc", content_type="text/plain")
    assert compat.body_already_read(request) is False
    assert request.body == b"abc"
    assert compat.body_already_read(request) is True


def test_keep_request_body_is_what_request_body_returns() -> None:
    request = RequestFactory().post("/", data=b"abc", content_type="text/plain")
    body = request.read(3)
    compat.keep_request_body(request, body)
    assert request.body == b"abc"
    assert request.read() == b"abc"  # the stream can be read again, as after request.body


def test_a_response_marked_logged_is_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    response = HttpResponse(status=503)
    compat.mark_response_logged(response)
    with caplog.at_level("WARNING", logger="django.request"):
        log_response("x", response=response)
    assert not caplog.records


def test_forget_thread_connection_drops_this_threads_wrapper() -> None:
    from django_pg_resilience.testing.django import database_alias

    class Nowhere:
        host, port = "127.0.0.1", 1

    with database_alias("compat_forget", Nowhere()) as alias:
        first = connections[alias]
        assert connections[alias] is first
        compat.forget_thread_connection(alias)
        assert connections[alias] is not first


def _databases() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.DATABASES)


def test_exempt_from_atomic_requests_is_what_django_reads() -> None:
    from django.core.handlers.base import BaseHandler

    def view(request: Any) -> HttpResponse:
        return HttpResponse()

    compat.exempt_from_atomic_requests(view, frozenset({"default"}))
    with override_settings(
        DATABASES={"default": {**_databases()["default"], "ATOMIC_REQUESTS": True}}
    ):
        assert BaseHandler().make_view_atomic(view) is view  # not wrapped in atomic()


# --- No other module touches a private Django name ---

#: Private names of Django (and psycopg) the package needs; only compat.py may name them.
PRIVATE_NAMES = (
    "_connection_pools",
    "_configure_connection",
    "_cursor",
    "_read_started",
    "_has_been_logged",
    "_connections",  # of django.db.connections; our own classes have one too
    "_non_atomic_requests",
    "_body",
    "_stream",
    "_WaitTimeout",
)
#: Overridden or extended on purpose (listed in compat.PRIVATE_APIS): a subclass's own
#: method and its super() call are how Django's backends are extended.
OVERRIDES = ("_commit", "_execute", "_executemany", "_connect")


def test_no_module_but_compat_touches_a_private_django_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py" and path.parent.name == "backend":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES:
                receiver = node.value
                if node.attr != "_connections" or (
                    isinstance(receiver, ast.Name) and receiver.id == "connections"
                ):
                    name = node.attr
            elif isinstance(node, ast.alias) and node.name.split(".")[-1] in PRIVATE_NAMES:
                name = node.name
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in PRIVATE_NAMES
                and node.args[1].value != "_connections"
            ):
                name = f"{node.func.id}(..., {node.args[1].value!r})"
            if name is not None:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    assert not offenders, "use a function of backend/compat.py instead:\n" + "\n".join(offenders)
