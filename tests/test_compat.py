"""The private APIs listed in backend/compat.py still exist in the installed releases.

CI runs this on every supported Django line, so a release that renames, removes or
re-signs one of them fails here, with its name, instead of in a failover.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Any

import pytest
from django.db import connections

from django_pg_resilience.backend import compat


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


@pytest.mark.parametrize("api", compat.PRIVATE_APIS, ids=lambda api: f"{api.owner}.{api.name}")
def test_private_api_is_still_there(api: compat.PrivateApi) -> None:
    owner = _resolve(api.owner)
    where = f"{api.owner}.{api.name} ({api.why})"
    if api.kind == "instance":
        wrapper = connections["default"]  # built, not connected
        assert isinstance(wrapper, _resolve(api.owner))
        assert hasattr(wrapper, api.name), f"{where} is no longer set by __init__"
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
