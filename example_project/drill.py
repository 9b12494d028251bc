#!/usr/bin/env python3
"""The failover drill, the README's demo: ``python3 example_project/drill.py [options]``.

On a fresh clone it first makes itself runnable (a .venv with the package and
its dev extras, PostgreSQL through apt-get when missing and root), then starts
a local primary + standby behind an endpoint proxy, serves the example shop
with gunicorn, drives storefront reads and Shopify webhooks at it from another
process, fails the primary over and reports what happened. ``--help`` lists
the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # This folder would shadow the example_project package (and its drill/):
    # the repo root is what belongs on sys.path.
    sys.path[:] = [
        p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()
    ]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / ".ci"))

    from bootstrap import bootstrap

    bootstrap()

    from example_project.drill.cli import main

    sys.exit(main())
