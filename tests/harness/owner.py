"""An owner process that starts servers and dies without closing them: what the reapers are for."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


@contextlib.contextmanager
def killed_owner(script: str) -> Iterator[tuple[subprocess.CompletedProcess[str], Path]]:
    """Run ``script`` (it starts servers, prints what it started, then ``os._exit``\\s) with a
    TMPDIR of its own: everything it leaves is in there. Yields its output and that directory,
    which the postgres user can enter (PgBouncer and PostgreSQL run as postgres when root)."""
    tmp = Path(tempfile.mkdtemp(prefix="pg-resilience-owner-test-"))
    tmp.chmod(0o755)
    try:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 1 and out.stdout, out.stderr  # os._exit(1), having printed
        yield out, tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
