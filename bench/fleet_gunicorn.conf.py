"""gunicorn for bench_fleet.py: the shop's own settings, plus what the benchmark reads.

* ``post_request``: one line per request (``monotonic status``) in a file per worker,
  so the benchmark can tell when each process served again after the move.
* ``worker_exit``: the worker's connection budget (the most attempts it made at once)
  and its counters, as JSON.

Both go to the folder named by ``FLEET_REPORT_DIR`` (none: not written).

``FLEET_WHAT_IF=release_when_busy`` models a change to the package, to measure it before
making it: while the process meets a full server, a thread closes its persistent
connection at the end of each request, so the few free slots rotate among the threads.
``FLEET_DEADLINE=S`` sets the alias's ``deadline`` (OPTIONS["resilience"]) in each worker.
"""

import json
import os
import time
from pathlib import Path

_shop_config = Path(__file__).resolve().parent.parent / "example_project" / "gunicorn.conf.py"
exec(compile(_shop_config.read_text(), str(_shop_config), "exec"))  # noqa: S102

_report_dir = Path(os.environ["FLEET_REPORT_DIR"]) if os.environ.get("FLEET_REPORT_DIR") else None
_release_when_busy = os.environ.get("FLEET_WHAT_IF") == "release_when_busy"
_request_log = None


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    deadline = os.environ.get("FLEET_DEADLINE")
    if deadline:
        from django.conf import settings

        options = settings.DATABASES["default"].setdefault("OPTIONS", {})
        options.setdefault("resilience", {})["deadline"] = float(deadline)


def post_request(worker, req, environ, resp):  # type: ignore[no-untyped-def]
    global _request_log
    if _release_when_busy:
        from django.db import connections

        from django_pg_resilience.backend import alias

        state = alias._states.get("default")
        if state is not None and state.busy.active:
            connections["default"].close()
    if _report_dir is None:
        return
    if _request_log is None:
        _request_log = open(_report_dir / f"requests-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
    _request_log.write(f"{time.monotonic():.4f} {resp.status_code}\n")


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    if _report_dir is None:
        return
    from django_pg_resilience import stats
    from django_pg_resilience.backend import alias

    state = alias._states.get("default")
    report = {
        "pid": os.getpid(),
        "connect_concurrency": None if state is None else state.connect_slots.limit,
        "peak_concurrent_attempts": None if state is None else state.connect_slots.peak,
        "stats": {name: values.get("default", 0) for name, values in stats.snapshot().items()},
    }
    (_report_dir / f"worker-{os.getpid()}.json").write_text(json.dumps(report))
