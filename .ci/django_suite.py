"""Django's own test suite, with our ENGINE, against a PostgreSQL of its own.

``.venv/bin/python .ci/django_suite.py`` (any venv with the package installed):

* fetches the sdist of the *installed* Django (``pip download --no-binary``), once, into
  ``.cache/django-sdist/`` (git-ignored), and unpacks its ``tests/``;
* starts a :class:`LocalCluster` (no standby: the suite needs a superuser and two
  databases, ``default`` and ``other``, which its runner creates);
* writes a settings module, Django's own ``test_sqlite.py`` with DATABASES replaced by
  ``django_pg_resilience.backend`` (and ``django_pg_resilience.backend.postgis`` for the
  GeoDjango part, run when PostGIS and GDAL are installed);
* runs ``tests/runtests.py`` on :data:`MODULES` with ``--parallel 2`` and fails on any
  failure or error that is not in :data:`INTENDED_DIFFERENCES`.

The full output is kept in ``.cache/django-suite-<version>.log``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import django

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.cluster import postgis_missing

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"

#: The test modules that exercise a database backend.
MODULES = (
    "backends",
    "transactions",
    "transaction_hooks",
    "select_for_update",
    "queries",
    "basic",
    "bulk_create",
    "db_functions",
    "expressions",
    "model_fields",
    "postgres_tests",
    "migrations",
    "schema",
    "raw_query",
    "get_or_create",
    "update",
    "delete",
    "aggregation",
    "annotations",
    "multiple_database",
    "test_utils",
    "introspection",
    "indexes",
    "constraints",
    "force_insert_update",
    "async",
    "db_utils",
    "fixtures",
    "timezones",
    "select_related",
    "prefetch_related",
    "lookup",
    "ordering",
    "custom_lookups",
    "cache",
    "sessions_tests",
    "inspectdb",
    "model_forms",
    "admin_views",
)

#: GeoDjango's modules, run with the PostGIS ENGINE.
GIS_MODULES = ("gis_tests.geoapp",)

#: Tests whose failure with our ENGINE is intended, with the reason (the README's
#: "Compatibility" section says the same). Keep it short: every entry is a place where
#: code written for Django's backend behaves differently with ours.
INTENDED_DIFFERENCES: dict[str, str] = {}

#: Settings our ENGINE adds on top of Django's test settings: the suite's connections
#: are direct (no endpoint to move), so a lost connection is a bug, and nothing waits.
_SETTINGS_TEMPLATE = """
from test_sqlite import *  # noqa: F401,F403  Django's own test settings

_COMMON = {{
    "ENGINE": {engine!r},
    "HOST": {host!r},
    "PORT": {port!r},
    "USER": "postgres",
    "PASSWORD": "",
}}
DATABASES = {{
    "default": {{**_COMMON, "NAME": "django"}},
    "other": {{**_COMMON, "NAME": "django_other"}},
}}
"""

_HEADER = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]+)\)", re.MULTILINE)
_RAN = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s", re.MULTILINE)


@dataclass
class SuiteResult:
    returncode: int
    ran: int | None
    problems: dict[str, str] = field(default_factory=dict)  # test id -> FAIL / ERROR


def parse(output: str, returncode: int) -> SuiteResult:
    """The tests that failed or errored, from unittest's summary."""
    ran = _RAN.search(output)
    result = SuiteResult(returncode=returncode, ran=int(ran.group(1)) if ran else None)
    for kind, name, where in _HEADER.findall(output):
        # Python 3.11+ prints "test_x (module.Class.test_x)"; a fixture "setUpClass (module.Class)".
        test_id = where if where.endswith(f".{name}") else f"{where}.{name}"
        result.problems[test_id] = kind
    return result


def unexpected(result: SuiteResult, intended: dict[str, str]) -> list[str]:
    """What fails the run: problems not intended, or a runner that died without a summary."""
    found = [
        f"{kind}: {test_id}" for test_id, kind in result.problems.items() if test_id not in intended
    ]
    if result.ran is None:
        found.append(f"the runner ended (exit {result.returncode}) without a summary: a crash")
    elif result.returncode != 0 and not result.problems:
        found.append(f"the runner exited {result.returncode} with no failing test listed")
    return found


def django_tests_dir() -> Path:
    """Django's ``tests/`` for the installed version, fetched and unpacked once."""
    version = django.__version__
    folder = CACHE / "django-sdist"
    unpacked = folder / f"django-{version}"
    if (unpacked / "tests" / "runtests.py").exists():
        return unpacked / "tests"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"django-{version}.tar.gz"
    if not archive.exists():
        print(f"[django-suite] downloading the Django {version} sdist", flush=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                "--no-deps", "--no-binary", ":all:", f"django=={version}", "-d", str(folder),
            ],
            check=True,
        )  # fmt: skip
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return unpacked / "tests"


def run(
    tests_dir: Path,
    cluster: LocalCluster,
    *,
    engine: str,
    modules: tuple[str, ...] | list[str],
    parallel: int,
    log: Path,
) -> SuiteResult:
    settings_dir = Path(tempfile.mkdtemp(prefix="django-suite-settings-"))
    primary = cluster.primary
    (settings_dir / "resilience_settings.py").write_text(
        _SETTINGS_TEMPLATE.format(engine=engine, host=primary.host, port=str(primary.port))
    )
    command = [
        sys.executable, "runtests.py", "--settings=resilience_settings", "--noinput",
        f"--parallel={parallel}", *modules,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{settings_dir}:{tests_dir}"}
    started = time.monotonic()
    with log.open("w") as out:
        completed = subprocess.run(
            command, cwd=tests_dir, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        )
    text = log.read_text(errors="replace")
    result = parse(text, completed.returncode)
    print(
        f"[django-suite] {engine}: {result.ran} tests, {len(result.problems)} failing, "
        f"{time.monotonic() - started:.0f} s (log: {log.relative_to(ROOT)})",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="test modules (default: the backend list)")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--no-gis", action="store_true", help="skip GeoDjango's tests")
    parser.add_argument("--gis-only", action="store_true", help="only GeoDjango's tests")
    args = parser.parse_args(argv)

    tests_dir = django_tests_dir()
    CACHE.mkdir(exist_ok=True)
    version = django.__version__
    failures: list[str] = []
    with LocalCluster(standbys=0) as cluster:
        runs = []
        if not args.gis_only:
            runs.append(("django_pg_resilience.backend", tuple(args.modules or MODULES), ""))
        gis_missing = "--no-gis" if args.no_gis else postgis_missing()
        if gis_missing is None and (args.gis_only or not args.modules):
            runs.append(("django_pg_resilience.backend.postgis", GIS_MODULES, "-gis"))
        elif args.gis_only:
            print(f"[django-suite] GeoDjango cannot run here: {gis_missing}", file=sys.stderr)
            return 1
        elif not args.modules:
            print(f"[django-suite] GeoDjango skipped: {gis_missing}", flush=True)
        for engine, modules, suffix in runs:
            log = CACHE / f"django-suite-{version}{suffix}.log"
            result = run(
                tests_dir, cluster, engine=engine, modules=modules, parallel=args.parallel, log=log
            )
            failures += unexpected(result, INTENDED_DIFFERENCES)
            for test_id in sorted(set(INTENDED_DIFFERENCES) - set(result.problems)):
                print(f"[django-suite] intended difference no longer fails: {test_id}", flush=True)
    if failures:
        print(f"[django-suite] Django {version}: unexpected failures:", file=sys.stderr)
        for line in failures:
            print(f"    {line}", file=sys.stderr)
        return 1
    print(f"[django-suite] Django {version}: no unexpected failure", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
