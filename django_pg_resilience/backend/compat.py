"""Every private API of Django, psycopg and psycopg_pool the package leans on, in one place.

Private means underscored, or public-looking but undocumented (an attribute Django's
own code sets and reads). None of them is promised to stay, so:

* the package reaches them only through here: a re-exported name, or a named
  function below (each says the releases it was checked against); no other module
  touches a private Django name (``tests/test_compat.py`` greps the package for it),
  so a change upstream breaks here (loudly), not in a failover path at run time;
* :data:`PRIVATE_APIS` lists each one with what we rely on (the parameters we pass),
  and :data:`COPIED_BODIES` the Django methods whose body the backend copies;
  ``tests/test_compat.py`` checks both against the installed releases, and CI runs it
  on every supported Django line (5.2 LTS, 6.1) with the newest psycopg.

Nothing here has behaviour: names, and the facts the test checks.

Verified with :data:`VERIFIED`. Minimums: ``psycopg >= 3.3.6`` is the first release
whose ``Connection.wait()`` takes ``timeout=`` and raises ``errors._WaitTimeout``
(3.3.5 has neither); ``psycopg_pool >= 3.2`` has ``ConnectionPool.check_connection``
and the ``check=`` parameter; ``ConnectionPool.drain()`` is 3.3+ and used only when
present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import CursorDebugWrapper
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg.errors import _WaitTimeout as WaitTimeout
from psycopg_pool import ConnectionPool
from psycopg_pool.pool import AddConnection

__all__ = [
    "COPIED_BODIES",
    "PRIVATE_APIS",
    "VERIFIED",
    "AddConnection",
    "BaseDatabaseWrapper",
    "ConnectionPool",
    "CopiedBody",
    "CursorDebugWrapper",
    "CursorWrapper",
    "PostgresDatabaseWrapper",
    "PrivateApi",
    "WaitTimeout",
    "body_already_read",
    "configure_connection",
    "connection_pools",
    "exempt_from_atomic_requests",
    "forget_thread_connection",
    "keep_request_body",
    "mark_response_logged",
    "open_cursor",
    "request_read_started",
]

#: The releases these facts were checked against (tests/test_compat.py, CI's matrix).
VERIFIED: dict[str, tuple[str, ...]] = {
    "Django": ("5.2.19", "6.0.10", "6.1.3"),
    "psycopg": ("3.3.6", "3.3.9"),
    "psycopg_pool": ("3.3.3",),
}


@dataclass(frozen=True)
class PrivateApi:
    """One private attribute: where it lives, what we pass it, and why we need it."""

    #: Dotted path of the module or class that has it.
    owner: str
    name: str
    #: "method", "attribute" (class level), "instance" (set by ``__init__``) or "class".
    kind: str
    #: The parameters the package passes (by name), which the signature must still have.
    parameters: tuple[str, ...] = ()
    why: str = ""


_PG = "django.db.backends.postgresql.base.DatabaseWrapper"
_BASE = "django.db.backends.base.base.BaseDatabaseWrapper"
_POOL = "psycopg_pool.ConnectionPool"

PRIVATE_APIS: tuple[PrivateApi, ...] = (
    # Django
    PrivateApi(
        _PG, "_connection_pools", "attribute",
        why="the per-process dict of pools, keyed by alias: drained after a failover",
    ),
    PrivateApi(
        _PG, "_configure_connection", "method", ("connection",),
        why="the pool's configure callback; ours wraps it to read the server identity",
    ),
    PrivateApi(
        _PG, "Database", "attribute",
        why="the driver module Django's get_new_connection connects with; replaced per "
        "wrapper by one that connects through the breaker",
    ),
    PrivateApi(
        _BASE, "closed_in_transaction", "instance",
        why="marks a connection lost inside atomic(), so the block rolls back, not reconnects",
    ),
    PrivateApi(
        _BASE, "_commit", "method",
        why="overridden to turn a connection lost during COMMIT into FailoverError",
    ),
    PrivateApi(
        "django.db.backends.utils.CursorWrapper", "_execute", "method", ("sql", "params"),
        why="overridden to recover a statement from a lost connection where it is safe",
    ),
    PrivateApi(
        "django.db.backends.utils.CursorWrapper", "_executemany", "method",
        ("sql", "param_list"),
        why="the same for executemany()",
    ),
    PrivateApi(
        "django.db.backends.postgresql.base", "CursorDebugWrapper", "class",
        why="the postgresql backend's debug cursor, which ours extends",
    ),
    PrivateApi(
        _BASE, "_cursor", "method", ("name",),
        why="a replay opens its cursor through the whole _cursor() path (open_cursor)",
    ),
    PrivateApi(
        "django.http.HttpRequest", "_read_started", "instance",
        why="a webhook reads a bounded body by hand unless the stream was read already",
    ),
    PrivateApi(
        "django.db.utils.ConnectionHandler", "_connections", "instance",
        why="the testing helper forgets a temporary alias's per-thread wrapper",
    ),
    # psycopg
    PrivateApi(
        "psycopg.Connection", "wait", "method", ("gen", "interval", "timeout"),
        why="overridden to bound a round trip by io_timeout (psycopg >= 3.3.6)",
    ),
    PrivateApi(
        "psycopg.errors", "_WaitTimeout", "class",
        why="what wait(timeout=) raises when the bound passes (psycopg >= 3.3.6)",
    ),
    # psycopg_pool
    PrivateApi(
        _POOL, "_connect", "method", ("timeout",),
        why="the pool's one connection attempt, which the backend routes through its breaker",
    ),
    PrivateApi(
        "psycopg_pool.pool", "AddConnection", "class",
        why="the pool's background task that opens a connection (and retries with backoff)",
    ),
    PrivateApi(
        _POOL, "__init__", "method", ("kwargs", "open", "configure", "check", "connection_class"),
        why="the backend builds the pool itself, with its connection class and check",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class CopiedBody:
    """A Django method whose body the backend copies, or whose body it relies on.

    ``digests`` are the SHA-256 of ``inspect.getsource()`` of Django's method in each
    verified release; a release with another digest changed that body, and the backend's
    copy (or reliance) must be reviewed, then the digest added here.
    """

    owner: str
    name: str
    digests: frozenset[str]
    why: str = ""


COPIED_BODIES: tuple[CopiedBody, ...] = (
    CopiedBody(
        _PG,
        "get_new_connection",
        frozenset({"acc4e253c2e311a4b5faa39afcc9b1d9920124606df2fc1094c5ea11ca6230dd"}),
        why="relied on: it connects with self.Database.connect (the breaker stands in for "
        "the module there) or checks out of self.pool",
    ),
    CopiedBody(
        _PG,
        "pool",
        frozenset(
            {
                "e5c2654fdf2d50900fec9db41948d0b026da988e24d0eba1b4b9a9d4aacb1b17",  # 5.2
                # 6.0: 5.2's body with a comment's typo fixed ("it's" -> "its").
                "8e4f4ff71f2c2ebcd41d217d5c5b971708e939a3555932d46babf785bd5857fc",
                # 6.1: OPTIONS["pool"] may name its own ``check`` (the copy follows).
                "4aca033570ecd5c4561ffca173975c890ceba05282cd7840c2a6db0ee69337ed",
            }
        ),
        why="copied: the backend builds its own pool class with Django's options",
    ),
)


# --- The door: one named function per private name (checked against VERIFIED["Django"]) ---


def connection_pools(wrapper: Any) -> dict[str, Any]:
    """Django's per-process pools of the postgresql backend, by alias (``_connection_pools``).

    Checked against Django 5.2, 6.0 and 6.1 (a class attribute since 5.1).
    """
    pools: dict[str, Any] = wrapper._connection_pools
    return pools


def configure_connection(wrapper: Any, connection: Any) -> None:
    """Django's per-connection setup of a pooled connection (``_configure_connection``).

    Checked against Django 5.2, 6.0 and 6.1.
    """
    wrapper._configure_connection(connection)


def open_cursor(wrapper: Any) -> Any:
    """A new cursor through the wrapper's whole ``_cursor()`` path (connecting if needed).

    The path a composed backend overrides to set state on each new connection
    (django-tenants' ``search_path``). Checked against Django 5.2, 6.0 and 6.1.
    """
    return wrapper._cursor()


def request_read_started(request: Any) -> bool:
    """True once the request's body stream was read (``HttpRequest._read_started``).

    Checked against Django 5.2, 6.0 and 6.1.
    """
    return bool(request._read_started)


def body_already_read(request: Any) -> bool:
    """True once ``request.body`` holds the body (``HttpRequest._body`` is set).

    Checked against Django 5.2, 6.0 and 6.1.
    """
    return hasattr(request, "_body")


def keep_request_body(request: Any, body: bytes) -> None:
    """Store a body read by hand where ``request.body`` finds it (``_body``, ``_stream``).

    What ``HttpRequest.body`` itself does after reading. Checked against Django 5.2, 6.0 and 6.1.
    """
    import io

    request._body = body
    request._stream = io.BytesIO(body)


def mark_response_logged(response: Any) -> None:
    """Tell Django not to log this response again as a server error (``_has_been_logged``).

    ``django.utils.log.log_response`` skips a response so marked. Checked against
    Django 5.2 and 6.1.
    """
    response._has_been_logged = True


def forget_thread_connection(alias: str) -> None:
    """Drop this thread's DatabaseWrapper of ``alias`` (``connections._connections``).

    Checked against Django 5.2, 6.0 and 6.1 (an asgiref Local since 3.0).
    """
    delattr(connections._connections, alias)  # type: ignore[attr-defined]


def exempt_from_atomic_requests(view: Any, aliases: Any) -> None:
    """What ``transaction.non_atomic_requests`` sets, for a collection of aliases at once.

    Django reads ``view._non_atomic_requests`` (a set of aliases) in
    ``BaseHandler.make_view_atomic``. Checked against Django 5.2, 6.0 and 6.1.
    """
    view._non_atomic_requests = aliases
