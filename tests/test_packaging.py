"""The release is tag-ready: one version everywhere, its CHANGELOG section, clean metadata."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

import django_pg_resilience

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def test_one_version_and_its_changelog_section() -> None:
    version = _project()["version"]
    assert version == django_pg_resilience.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(version)), "a release version, not a dev one"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(
        rf"^## {re.escape(str(version))} \(\d{{4}}-\d{{2}}-\d{{2}}\)$", changelog, re.M
    )


def test_the_licence_is_an_spdx_expression_and_no_dependency_is_listed_twice() -> None:
    project = _project()
    assert project["license"] == "BSD-3-Clause"
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    for extra, requirements in extras.items():
        names = [re.split(r"[<>=\[; ]", requirement)[0].lower() for requirement in requirements]
        assert len(names) == len(set(names)), f"[{extra}] lists a package twice: {names}"
