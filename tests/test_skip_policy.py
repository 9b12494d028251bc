"""tests/skip_policy.py: a missing component fails a CI run, and every run lists its skips.

Each case runs pytest in a subprocess on a small suite whose tests need a
component this machine does not have (a command that exists nowhere), the way
the real tests skip for redis-server, PgBouncer or Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import skip_policy

ROOT = Path(__file__).resolve().parents[1]

NEEDS_A_MISSING_COMMAND = """
    import shutil

    import pytest

    MISSING = "no-such-component-for-the-skip-policy-test"


    @pytest.fixture
    def component():
        if shutil.which(MISSING) is None:
            pytest.skip(f"{MISSING} is not installed")
        return MISSING


    def test_needs_it(component):
        assert component


    @pytest.mark.skipif(shutil.which(MISSING) is None, reason=f"{MISSING} is not installed")
    def test_marked(component):
        assert component


    def test_passes():
        assert True
"""

SKIPPED_AT_COLLECTION = """
    import pytest

    pytest.skip("the optional package is not installed", allow_module_level=True)
"""


def run_suite(
    tmp_path: Path, files: dict[str, str], *args: str, ini: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    for name, source in files.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CI", "PG_RESILIENCE_NO_SKIPS", "DJANGO_SETTINGS_MODULE")
    }
    environment.update(env, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.skip_policy"]
    command += ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), *args]
    return subprocess.run(
        [*command, str(tmp_path)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_outside_ci_a_missing_component_skips_and_the_run_lists_why(tmp_path: Path) -> None:
    done = run_suite(tmp_path, {"test_component.py": NEEDS_A_MISSING_COMMAND})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout
    summary = done.stdout.split("skipped, and why", 1)[1]
    assert "   2  no-such-component-for-the-skip-policy-test is not installed" in summary
    assert "test_component.py::test_needs_it" in summary
    assert "2 skipped (under CI=true each would fail the run)" in summary


def test_under_ci_a_missing_component_is_a_failure(tmp_path: Path) -> None:
    done = run_suite(tmp_path, {"test_component.py": NEEDS_A_MISSING_COMMAND}, CI="true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    # Both skips come at setup (a fixture's, a marker's): reported as errors, with the reason.
    assert done.stdout.splitlines()[-1].split(" in ")[0].strip("= ") == "1 passed, 2 errors"
    assert "skipped under CI, where every component the suite needs must be installed" in (
        done.stdout
    )
    assert "FAILED: 2 skipped under CI" in done.stdout


@pytest.mark.parametrize(
    ("environment", "strict"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"PG_RESILIENCE_NO_SKIPS": "1"}, True),
    ],
)
def test_what_counts_as_ci(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], strict: bool
) -> None:
    for name in skip_policy.STRICT_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert skip_policy.strict() is strict


def test_under_ci_a_module_skipped_at_collection_fails_the_run(tmp_path: Path) -> None:
    files = {"test_optional.py": SKIPPED_AT_COLLECTION, "test_fine.py": "def test_ok(): pass\n"}
    outside = run_suite(tmp_path, files)
    assert outside.returncode == 0, outside.stdout + outside.stderr
    under_ci = run_suite(tmp_path, files, CI="true")
    assert under_ci.returncode == pytest.ExitCode.TESTS_FAILED, under_ci.stdout
    assert "the optional package is not installed" in under_ci.stdout.split("skipped, and why")[1]
    assert "FAILED: 1 skipped under CI" in under_ci.stdout


def test_deselection_is_not_a_skip(tmp_path: Path) -> None:
    files = {
        "test_marked.py": """
            import pytest

            @pytest.mark.slow_for_this_test
            def test_deselected():
                pass

            def test_selected():
                pass
        """
    }
    ini = "markers = slow_for_this_test: a marker\n"
    done = run_suite(tmp_path, files, "-m", "not slow_for_this_test", ini=ini, CI="true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 deselected" in done.stdout
    assert "skipped, and why" not in done.stdout
