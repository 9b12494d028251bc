"""The failover drill: a real shop, real traffic, a real PostgreSQL failover, and the bill.

``python3 example_project/drill.py`` (bootstraps itself) or, inside the venv,
``python -m example_project.drill``. Modules:

* :mod:`.stack`: the cluster, its endpoint proxy and the gunicorn server.
* :mod:`.traffic`: the HTTP traffic, in a process of its own.
* :mod:`.scenarios`: what goes wrong (crash, switchover, blackhole, rejoin).
* :mod:`.report`: the numbers, the invariants, the table, the JSON and the plot.
* :mod:`.cli`: the command line that ties them together.
"""
