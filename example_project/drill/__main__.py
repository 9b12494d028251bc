"""``python -m example_project.drill``: the drill without the bootstrap step (inside the venv)."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from example_project.drill.cli import main

    sys.exit(main())
