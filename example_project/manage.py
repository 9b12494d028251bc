#!/usr/bin/env python
"""Django's command-line utility for the example shop.

Run from anywhere: ``python example_project/manage.py runserver`` (the repo
root goes on sys.path so that ``example_project`` imports as a package).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
