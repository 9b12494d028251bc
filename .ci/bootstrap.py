"""Make a fresh clone runnable: a .venv with the package, and a PostgreSQL server.

The README's two commands start with this, so they work on a new machine:
``python3 example_project/drill.py`` and ``python3 tests/run.py``.

* Creates ``.venv`` beside this folder and installs the package with the
  ``dev`` extras into it (again only when pyproject.toml changed).
* Installs PostgreSQL (and pgbouncer) with apt-get when the server binaries are
  missing and we are root; otherwise prints the command to run.
* Re-runs the calling script inside the venv.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
#: Debian packages for the demo: PostgreSQL's server binaries.
SERVER_PACKAGES = ("postgresql", "postgresql-contrib")
#: And for the test suite: PgBouncer for the pooled-failover tests, Chromium for the 503 page's
#: browser test, iproute2 (``ip``) for the silent peer in a network namespace, Prometheus for
#: promtool (checks and unit-tests the shipped alerting rules), Redis as the Celery tests' broker,
#: PostGIS and GDAL for the GeoDjango backend; each skipped with a reason where it cannot be
#: installed.
TEST_PACKAGES = (
    *SERVER_PACKAGES,
    "pgbouncer",
    "chromium",
    "iproute2",
    "prometheus",
    "redis-server",
    "postgresql-15-postgis-3",
    "gdal-bin",
)
#: Packages whose command is not named after them.
_COMMANDS = {"iproute2": "ip", "prometheus": "promtool", "gdal-bin": "gdalinfo"}


def _say(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def _have_postgres() -> bool:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"], "initdb").exists()
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or bool(shutil.which("initdb"))


def _missing(package: str) -> bool:
    if package == "postgresql-15-postgis-3":
        return not glob.glob("/usr/share/postgresql/*/extension/postgis.control")
    if package.startswith("postgresql"):
        return not _have_postgres()
    command = _COMMANDS.get(package, package)
    return shutil.which(command) is None and not Path("/usr/sbin", command).exists()


def ensure_system_packages(packages: tuple[str, ...]) -> None:
    missing = [package for package in packages if _missing(package)]
    if not missing:
        return
    wanted = " ".join(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        if not _have_postgres():
            sys.exit(
                "PostgreSQL server binaries are missing. Install them, e.g.\n"
                f"    sudo apt-get update && sudo apt-get install -y {wanted}\n"
                "or set PG_BINDIR to the directory that holds initdb and pg_ctl."
            )
        _say(
            f"{' and '.join(missing)} missing; the tests that need them are skipped, and under "
            f"CI=true each skip fails the run ({wanted})"
        )
        return
    _say(f"installing {wanted} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def _requirements_stamp(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode())
    return digest.hexdigest()


def ensure_venv(extras: str = "dev") -> None:
    """Install into .venv if needed, then re-exec the running script with it."""
    stamp_file = VENV / ".django-pg-resilience-stamp"
    stamp = _requirements_stamp(extras)
    if not VENV_PYTHON.exists():
        _say(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        _say(f"installing django-pg-resilience[{extras}] into .venv (once)")
        pip = [str(VENV_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # pip's output only matters when it fails; on success it is noise in the demo.
        result = subprocess.run(
            [*pip, "-e", f"{ROOT}[{extras}]"], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            sys.exit(f"pip install failed (exit {result.returncode}); see above.")
        stamp_file.write_text(stamp)
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


def bootstrap(extras: str = "dev", packages: tuple[str, ...] = SERVER_PACKAGES) -> None:
    ensure_system_packages(packages)
    ensure_venv(extras)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
