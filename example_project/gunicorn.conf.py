"""gunicorn settings of the example shop: ``gunicorn -c example_project/gunicorn.conf.py``.

Several processes, each with a few threads, as a small production site runs.
Everything can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import os

wsgi_app = "example_project.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# Longer than the backend's deadline, so that a request waiting out a failover
# is never killed by the arbiter.
timeout = 30
graceful_timeout = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
# gunicorn >= 24 opens a control socket at one fixed path per user; several
# servers at once (a drill beside the test suite) would fight over it.
control_socket_disable = True
