"""Run the test suite on a fresh clone: ``python3 tests/run.py [pytest args]``.

Bootstraps itself (a .venv with the package and its dev extras, PostgreSQL
through apt-get when missing and root), then runs pytest. Every test that
needs PostgreSQL starts its own servers from django_pg_resilience.testing.

The run ends with what was skipped and why ("skipped, and why"); with CI=true
each skip (a component missing from the machine) fails the run
(tests/skip_policy.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would be first on sys.path, and tests/<name> packages would
# shadow libraries of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".ci"))

from bootstrap import TEST_PACKAGES, bootstrap  # noqa: E402

if __name__ == "__main__":
    bootstrap(packages=TEST_PACKAGES)
    import pytest

    sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
