"""How long a job waits out a database outage, and when it stops waiting (pure: no Celery, no I/O).

A job whose only failures are the database being unavailable keeps retrying
until its *outage budget* (``JOB_OUTAGE_BUDGET``) runs out, counted from its
first such failure. The time of that failure travels with the job (a message
header, see :mod:`.tasks`), so a retry, a redelivery after a killed worker and
a retry on another machine all count from the same instant.

The wait before each retry grows with the outage itself::

    step = min(cap, max(1 s, 3 x time since the first failure))
    wait = a uniform random time between 3/4 of step and step

so the tries come about 1 s, 3.5 s, 13 s and 50 s into the outage (its length
grows 3.25-4 times per retry), then every 45 to 60 s (``cap`` = 60). Why not
count retries, and why not full jitter (``uniform(0, step)``):

* Full jitter waits ``cap / 2`` on average at the cap: ``2 x outage / cap``
  messages per job for the flat part alone, with the ramp from 1 s to the cap
  on top. A 3/4-to-1 window still spreads the retries of jobs that failed
  together (over ``cap / 4`` seconds, more with every retry: the draws add
  up), at ``8/7 x outage / cap`` messages per job.
* Growing with the time elapsed rather than the retry count reaches the cap in
  four retries instead of six doublings, and needs nothing but the first
  failure's time, which a redelivered message still carries.

A job sends about ``8/7 x outage / cap + 4`` messages in a long outage (the
documented bound, ``2 x outage / cap + 1``, holds from about four caps on:
9.4 messages in 5 minutes, bound 11; tests/jobs/test_retry_policy.py), and
resumes within ``cap`` seconds of the database answering (23 s on average at
the default cap). The last wait is cut so the job's last try lands on its
budget; past it the job is parked.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "FIRST_RETRY",
    "OUTAGE_SINCE_HEADER",
    "OutageBudgetExceeded",
    "OutagePolicy",
]

#: The message header holding the Unix time of the job's first outage failure.
OUTAGE_SINCE_HEADER = "pg_resilience_outage_since"

#: The first wait's upper bound, in seconds: a failover usually takes seconds.
FIRST_RETRY = 1.0
#: A step is this many times the outage so far (then capped).
GROWTH = 3.0
#: A wait is drawn between this share of its step and the whole step.
WINDOW = 0.75


class OutageBudgetExceeded(Exception):
    """A job kept meeting an unavailable database for longer than ``JOB_OUTAGE_BUDGET``.

    The job did not run to completion and was parked (``ParkedJob``, in the
    admin), from where an operator replays it. Its message is the task, how
    long the outage lasted for it and its last error (secrets masked).
    """


@dataclass(frozen=True)
class OutagePolicy:
    """When a job in an outage tries again, and when it gives up (seconds)."""

    #: How long, from the first outage failure, the job keeps retrying.
    budget: float = 3600.0
    #: Largest step; the waits at the cap are between ``3/4 x cap`` and ``cap``.
    cap: float = 60.0
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def elapsed(self, since: float) -> float:
        """Seconds of outage since ``since`` (a Unix time), never negative."""
        return max(0.0, self.clock() - since)

    def exhausted(self, since: float) -> bool:
        """The budget has run out for a job whose first outage failure was at ``since``."""
        return self.elapsed(since) >= self.budget

    def countdown(self, since: float) -> float:
        """Seconds before the next try (see the module docs); never past the budget."""
        elapsed = self.elapsed(since)
        step = min(self.cap, max(FIRST_RETRY, GROWTH * elapsed))
        wait = step * (WINDOW + (1.0 - WINDOW) * self.random())
        return min(wait, max(0.0, self.budget - elapsed))

    def wait_to_park(self) -> float:
        """Seconds before a job past its budget tries again to park (3/4 of the cap to the cap)."""
        return self.cap * (WINDOW + (1.0 - WINDOW) * self.random())
