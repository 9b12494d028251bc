"""The psycopg connection class the backend opens: psycopg's own, plus an
optional client-side bound on each round trip (``io_timeout``).

Why a bound on the client side at all: a peer that vanishes without a RST is
noticed by TCP keepalives (idle connection) and ``tcp_user_timeout`` (data not
acknowledged), which the backend turns on. When the path still acknowledges
data but nothing answers (a userspace proxy that blackholes, a stuck
middlebox), only the client can give up. It is off by default because a long
query is legitimate; when set, it bounds the whole round trip of a statement.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

__all__ = ["IoTimeout", "ResilientConnection"]

RV = TypeVar("RV")


class IoTimeout(psycopg.OperationalError):
    """No complete answer from the server within ``io_timeout``; the connection was closed."""


class ResilientConnection(psycopg.Connection[Any]):
    """A psycopg connection whose statements give up after ``io_timeout`` seconds (if set)."""

    #: Seconds; None or 0 is no bound. Set per connection by the backend.
    io_timeout: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        io_timeout = self.io_timeout
        if timeout is not None or not io_timeout:
            return super().wait(gen, interval=interval, timeout=timeout)
        try:
            return super().wait(gen, interval=interval, timeout=io_timeout)
        except pg_errors._WaitTimeout:
            # The protocol is mid-message: the connection cannot be reused.
            self.pgconn.finish()
            raise IoTimeout(
                f"no answer from the server within io_timeout={io_timeout:g} s; "
                "the connection was closed"
            ) from None
