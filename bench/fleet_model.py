"""A fleet reconnecting to a new primary, simulated: the package's own breaker, backoff and budget.

A discrete-event simulation with injected time (no threads, no sleeping). Each of
``processes`` processes owns the package's real
:class:`~django_pg_resilience.breaker.CircuitBreaker`
(clock and random injected) and retry policies built from the real
:class:`~django_pg_resilience.conf.BackendSettings`, and a connection budget of
``connect_concurrency`` attempts at a time. The only code mirrored here is what
blocks in the package: ``CircuitBreaker.admit`` waiting on its condition (the
mirror decides *whether* admit would wait, and re-asks the real ``admit`` when the
wait ends), ``ConnectSlots.attempt`` (a FIFO semaphore with a timeout), the busy
loop of ``_connect_through_breaker`` (its delay comes from the real ``busy_policy``)
and the background prober's loop (``seconds_to_next_probe`` / ``try_probe``).

The model node: ``slots`` client slots; one handshake server that starts ``accept_rate``
connections a second (FIFO). A connection accepted holds a slot until the client
closes it; when every slot is taken the server answers "sorry, too many clients
already" (53300), which costs it ``refuse_cost`` of an accepted connection. A client
gives up after ``connect_timeout`` (libpq's, 2 s by default): a time-out the package
reads as a lost connection (DOWN), and the handshake server still pays
``abandoned_cost`` for it when it reaches it (PostgreSQL forks a backend for every
connection in its listen queue; it finds the client gone).

The workload: requests arrive at the fleet (Poisson, ``request_rate`` a second,
spread evenly over the processes), each runs on one of a process's ``threads``
threads, opens a connection (``CONN_MAX_AGE=0``: a fleet larger than the node's
slots cannot keep one per thread), holds it ``hold`` seconds, and closes it. The
primary crashes at t = 0 (connections refused at once), and the endpoint moves to
the new primary ``outage`` seconds later: the time origin of every figure.

``engine="stock"``: Django's own backend: one attempt per request, no breaker, no
budget, and an error is the answer (a 500).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from django_pg_resilience.backoff import RetryBudget
from django_pg_resilience.breaker import DIRECT, PROBE, CircuitBreaker
from django_pg_resilience.conf import BackendSettings
from django_pg_resilience.errors import DatabaseUnavailable, ErrorKind, classify

__all__ = ["FleetModel", "NodeModel", "simulate"]

#: What the client sees, in the package's classification (checked in :func:`simulate`).
REFUSED = psycopg.OperationalError(
    'connection failed: connection to server at "10.0.0.1", port 25060 failed: Connection refused'
)
TIMED_OUT = psycopg.OperationalError("connection timeout expired")
TOO_MANY = psycopg.OperationalError(
    'connection failed: connection to server at "10.0.0.1", port 25060 failed: '
    "FATAL:  sorry, too many clients already"
)
#: Time to learn that the dead primary refuses a connection.
REFUSE_LATENCY = 0.001


@dataclass(frozen=True)
class NodeModel:
    """The new primary (see the module docs)."""

    slots: int = 200
    #: Backend start-ups a second (the handshake server's rate).
    accept_rate: float = 200.0
    #: Connections (working and starting) beyond which the postmaster refuses at the door
    #: (PostgreSQL's MaxLivePostmasterChildren: about twice max_connections).
    children_limit: int = 400
    #: A refusal (53300) costs this fraction of an accepted connection's start-up.
    refuse_cost: float = 0.1
    #: A connection whose client gave up (connect_timeout) while it waited still costs
    #: this fraction: its backend starts, then finds the client gone.
    abandoned_cost: float = 1.0


@dataclass(frozen=True)
class FleetModel:
    """The fleet and its traffic (see the module docs)."""

    processes: int = 1000
    threads: int = 4
    #: Requests a second, over the whole fleet (each opens one connection).
    request_rate: float = 100.0
    #: Seconds a request holds its connection.
    hold: float = 0.02
    #: Seconds from the crash to the move (the standby's promotion).
    outage: float = 2.0
    #: Seconds simulated after the move.
    horizon: float = 60.0
    #: "resilient" (this package) or "stock" (Django's backend).
    engine: str = "resilient"
    settings: BackendSettings = field(default_factory=BackendSettings)
    seed: int = 1
    #: A 200 slower than this (seconds, from arrival) is not full service.
    slow: float = 1.0
    #: Also one request per process at a random moment of the outage: every process
    #: knows of the outage at the move (a readiness check, a cron job, a Celery beat).
    herd: bool = False
    #: Models of other designs, to measure against the package (none: the package as is):
    #: "per_caller_busy_backoff": each caller backs off from its own refusals (the package
    #: before this round's change; it now holds back every caller of the process, one
    #: full-jitter exponential backoff per process);
    #: "probe_hands_over": the open circuit's successful probe keeps its connection for the
    #: process's next caller instead of closing it;
    #: "startup_timeouts_are_busy": a connect that timed out after the server accepted the TCP
    #: connection (the start-up never finished: every time-out at the new primary here) is
    #: busy, like 53300, instead of a lost connection.
    what_if: frozenset[str] = frozenset()


class Sim:
    """The event loop: a clock and a heap of timed callbacks."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), fn))

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            when, _, fn = heapq.heappop(self._heap)
            self.now = when
            fn()
        self.now = until


class Node:
    """The endpoint and the node behind it (see :class:`NodeModel`)."""

    def __init__(self, sim: Sim, model: NodeModel, timeout: float) -> None:
        self.sim = sim
        self.model = model
        self.timeout = timeout
        self.unit = 1.0 / model.accept_rate
        self.up = False
        self.in_use = 0
        self.peak_in_use = 0
        self.queue: deque[Dial] = deque()
        self.serving = False
        #: Handshake work owed for refusals made while the server was busy (seconds).
        self.debt = 0.0
        #: Times at which attempts reached the endpoint (after the move: the new primary).
        self.attempt_times: list[float] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        #: What the new primary answered (after the move).
        self.outcomes: Counter[str] = Counter()
        self.refused_while_down = 0

    def connect(self, dial: Dial) -> None:
        sim, model = self.sim, self.model
        self.attempt_times.append(sim.now)
        if not self.up:
            self.refused_while_down += 1
            sim.at(sim.now + REFUSE_LATENCY, lambda: dial.failed(REFUSED))
            return
        children = self.in_use + self.in_flight
        if children >= model.children_limit:
            # The postmaster's own limit on its children: a dead-end backend says 53300.
            self.outcomes["too many clients (53300), postmaster"] += 1
            if self.serving:
                self.debt += self.unit * model.refuse_cost
            sim.at(sim.now + REFUSE_LATENCY, lambda: dial.failed(TOO_MANY))
            return
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.queue.append(dial)

        def give_up() -> None:
            if dial.state == "queued":
                dial.state = "abandoned"  # its backend still starts up, then finds it gone
                self.outcomes["timed out"] += 1
                dial.failed(TIMED_OUT)

        sim.at(sim.now + self.timeout, give_up)
        if not self.serving:
            self._serve_next()

    def _serve_next(self) -> None:
        model, sim = self.model, self.sim
        if self.debt > 0:
            self.serving = True
            debt, self.debt = self.debt, 0.0
            sim.at(sim.now + debt, self._serve_next)
            return
        while self.queue:
            dial = self.queue.popleft()
            self.serving = True
            if dial.state == "abandoned":
                sim.at(sim.now + self.unit * model.abandoned_cost, self._abandoned)
                return
            dial.state = "served"
            if self.in_use < model.slots:
                self.in_use += 1
                self.peak_in_use = max(self.peak_in_use, self.in_use)
                sim.at(sim.now + self.unit, lambda d=dial: self._accepted(d))
            else:
                sim.at(sim.now + self.unit * model.refuse_cost, lambda d=dial: self._refused(d))
            return
        self.serving = False

    def _abandoned(self) -> None:
        self.in_flight -= 1
        self._serve_next()

    def _accepted(self, dial: Dial) -> None:
        self.in_flight -= 1
        self.outcomes["accepted"] += 1
        dial.connected()
        self._serve_next()

    def _refused(self, dial: Dial) -> None:
        self.in_flight -= 1
        self.outcomes["too many clients (53300), slots full"] += 1
        dial.failed(TOO_MANY)
        self._serve_next()

    def close(self) -> None:
        self.in_use -= 1


class Dial:
    """One connection attempt and who waits for its outcome."""

    def __init__(self, on_connected: Callable[[], None], on_failed: Callable[[Any], None]):
        self.state = "queued"
        self.connected = on_connected
        self.failed = on_failed


@dataclass
class Request:
    process: int
    arrival: float
    end: float = math.nan
    status: int = 0
    why: str = ""


class Slots:
    """``ConnectSlots``: at most ``limit`` attempts at a time, FIFO waiters with a timeout."""

    def __init__(self, sim: Sim, limit: int) -> None:
        self.sim = sim
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self.waiters: deque[list[Any]] = deque()

    def acquire(
        self, timeout: float, granted: Callable[[], None], timed_out: Callable[[], None]
    ) -> None:
        if self.limit <= 0 or (self.in_use < self.limit and not self.waiters):
            self._take()
            granted()
            return
        entry: list[Any] = [granted, True]
        self.waiters.append(entry)

        def expire() -> None:
            if entry[1]:
                entry[1] = False
                timed_out()

        self.sim.at(self.sim.now + max(timeout, 0.0), expire)

    def _take(self) -> None:
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        self.in_use -= 1
        while self.waiters:
            entry = self.waiters.popleft()
            if entry[1]:
                entry[1] = False
                self._take()
                granted = entry[0]
                self.sim.at(self.sim.now, granted)
                return


class Process:
    """One web process: its breaker, budget, prober, and the requests it serves."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        sim = fleet.sim
        self.rng = random.Random(fleet.model.seed * 1_000_003 + index)
        settings = fleet.model.settings
        self.policy = dataclasses.replace(
            settings.retry_policy, clock=lambda: sim.now, random=self.rng.random
        )
        self.busy_policy = dataclasses.replace(
            settings.busy_policy, clock=lambda: sim.now, random=self.rng.random
        )
        self.breaker = CircuitBreaker(
            f"p{index}", settings.breaker_settings, clock=lambda: sim.now, rand=self.rng.random
        )
        self.breaker.background_probe = self.ensure_prober
        self.slots = Slots(sim, settings.connect_concurrency)
        self.free_threads = fleet.model.threads
        self.backlog: deque[Request] = deque()
        self.waiting: dict[int, Callable[[], None]] = {}
        self._wait_ids = itertools.count()
        self.prober_running = False
        self.prober_waits_for_demand = False
        self.prober_wakeups = 0
        self.opened = 0
        self.served_after_move: float | None = None
        #: When the breaker last left the open state after the move.
        self.ready_again_at: float | None = None
        #: The process's busy backoff: no caller dials before this; refusals in a row.
        self.busy_gate = -math.inf
        self.busy_streak = 0
        #: what_if "probe_hands_over": a connection the prober left for the next caller.
        self.handed_over = False

    # --- requests -------------------------------------------------------------

    def arrive(self, request: Request) -> None:
        self.backlog.append(request)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.free_threads and self.backlog:
            self.free_threads -= 1
            request = self.backlog.popleft()
            if self.fleet.model.engine == "stock":
                StockCall(self, request).start()
            else:
                Caller(self, request).start()

    def finish(self, request: Request, status: int, why: str) -> None:
        sim = self.fleet.sim
        request.end, request.status, request.why = sim.now, status, why
        if status == 200 and sim.now >= self.fleet.moved_at and self.served_after_move is None:
            self.served_after_move = sim.now
        self.free_threads += 1
        self._dispatch()

    # --- the breaker's waiters (its Condition) ----------------------------------

    def wait_on_breaker(self, until: float, wake: Callable[[], None]) -> None:
        token = next(self._wait_ids)
        self.waiting[token] = wake

        def timer() -> None:
            callback = self.waiting.pop(token, None)
            if callback is not None:
                callback()

        self.fleet.sim.at(until, timer)

    def notify_all(self) -> None:
        waiting, self.waiting = self.waiting, {}
        sim = self.fleet.sim
        for callback in waiting.values():
            sim.at(sim.now, callback)

    def breaker_event(self, was_open: bool) -> None:
        """After a call that may have changed the breaker: wake waiters, count openings."""
        is_open = self.breaker.state == "open"
        now = self.fleet.sim.now
        if is_open and not was_open:
            self.opened += 1
            if now >= self.fleet.moved_at:
                self.fleet.opened_after_move += 1
        elif was_open and not is_open and now >= self.fleet.moved_at:
            self.ready_again_at = now
        self.notify_all()

    # --- the background prober --------------------------------------------------

    def _close_handed_over(self) -> None:
        if self.handed_over:
            self.handed_over = False
            self.fleet.node.close()

    def ensure_prober(self) -> None:
        if not self.prober_running:
            self.prober_running = True
            sim = self.fleet.sim
            sim.at(sim.now, self._prober_step)

    def wake_prober(self) -> None:
        """A caller was refused (``breaker.demand`` set): the prober waiting for one wakes."""
        if self.prober_waits_for_demand:
            self.prober_waits_for_demand = False
            self.prober_wakeups += 1
            token = self.prober_wakeups
            sim = self.fleet.sim
            sim.at(sim.now, lambda: self._prober_step(token))

    def _prober_step(self, token: int | None = None) -> None:
        if token is not None and token != self.prober_wakeups:
            return  # a stale wake-up: a newer one is scheduled
        sim, breaker = self.fleet.sim, self.breaker
        plan = breaker.seconds_to_next_probe()
        if plan is None:
            self.prober_running = False
            return
        wait, sooner_on_demand = plan
        if wait > 0:
            self.prober_waits_for_demand = sooner_on_demand
            self.prober_wakeups += 1
            token = self.prober_wakeups
            sim.at(sim.now + wait, lambda: self._prober_step(token))
            return
        if not breaker.try_probe():
            sim.at(sim.now + 0.01, self._prober_step)
            return
        self.fleet.probes += 1

        def connected() -> None:
            if "probe_hands_over" in self.fleet.model.what_if and not self.handed_over:
                self.handed_over = True
                sim.at(sim.now + 1.0, self._close_handed_over)
            else:
                self.fleet.node.close()  # the probe closes its connection at once
            breaker.record_success(PROBE)
            self.breaker_event(True)
            self._prober_step()

        def failed(exc: Any) -> None:
            if exc is TIMED_OUT and "startup_timeouts_are_busy" in self.fleet.model.what_if:
                exc = TOO_MANY
            if exc is TOO_MANY:
                breaker.record_success(PROBE)  # answered: callers meet the full server
            else:
                breaker.record_failure(PROBE, exc, None)
            self.breaker_event(True)
            self._prober_step()

        self.fleet.node.connect(Dial(connected, failed))


class Caller:
    """One request's connect, as ``_connect_through_breaker`` and ``CircuitBreaker.call`` run it."""

    def __init__(self, process: Process, request: Request) -> None:
        self.process = process
        self.request = request
        self.sim = process.fleet.sim
        self.budget = RetryBudget(process.policy, self.sim.now, recovering_since=self.sim.now)
        self.busy_failures = 0
        self.role = DIRECT
        self.attempt_started = 0.0
        self._new_call()

    def _new_call(self) -> None:
        """A (new) ``breaker.call``: its own view of the probes made for it."""
        self.first_probe = self.process.breaker._probes
        self.last_error: BaseException | None = None

    def start(self) -> None:
        self.admit()

    def _would_wait(self) -> float | None:
        """When ``breaker.admit`` would wait on its condition: until when (else None)."""
        breaker, budget = self.process.breaker, self.budget
        if breaker.outage_since is None and not breaker._probing:
            return None
        if breaker._open:
            return None
        now = self.sim.now
        attempts_seen = max(breaker._probes - self.first_probe, budget.failures)
        if now >= budget.deadline_at or attempts_seen >= max(budget.policy.max_attempts, 1):
            return None
        if not breaker._probing and now >= breaker._next_probe_at:
            return None
        return (
            budget.deadline_at
            if breaker._probing
            else min(budget.deadline_at, breaker._next_probe_at)
        )

    def admit(self) -> None:
        process, breaker = self.process, self.process.breaker
        if process.busy_gate > self.sim.now:
            if process.busy_gate - self.sim.now < self.budget.remaining:
                self.sim.at(process.busy_gate, self.admit)
                return
            if self.busy_failures:
                process.finish(self.request, 503, "busy")
                return
            # A caller whose deadline is shorter than the backoff asks once (as the package).
        if process.handed_over and breaker.state == "closed":
            process.handed_over = False  # the prober's connection: no dialling
            self.role = DIRECT
            self.attempt_started = self.sim.now
            process.slots._take()
            self.connected()
            return
        until = self._would_wait()
        if until is not None:
            process.wait_on_breaker(until, self.admit)
            return
        was_open = breaker.state == "open"
        try:
            self.role = breaker.admit(
                self.budget, first_probe=self.first_probe, last_error=self.last_error
            )
        except DatabaseUnavailable:
            process.breaker_event(was_open)
            process.wake_prober()
            process.finish(self.request, 503, "unavailable")
            return
        self.attempt_started = self.sim.now
        process.slots.acquire(self.budget.remaining, self.dial, self.slot_timed_out)

    def slot_timed_out(self) -> None:
        # DatabaseBusy from ConnectSlots: not retryable for the breaker, not "answered".
        self.process.breaker.end_probe(self.role)
        self.process.breaker_event(self.process.breaker.state == "open")
        self.busy(answered=False)

    def dial(self) -> None:
        self.process.fleet.node.connect(Dial(self.connected, self.failed))

    def connected(self) -> None:
        process, breaker = self.process, self.process.breaker
        process.slots.release()
        was_open = breaker.state == "open"
        breaker.record_success(self.role)
        process.breaker_event(was_open)
        process.busy_streak = 0
        fleet = process.fleet

        def done() -> None:
            fleet.node.close()
            process.finish(self.request, 200, "ok")

        self.sim.at(self.sim.now + fleet.model.hold, done)

    def failed(self, exc: Any) -> None:
        process, breaker = self.process, self.process.breaker
        process.slots.release()
        if exc is TIMED_OUT and "startup_timeouts_are_busy" in process.fleet.model.what_if:
            exc = TOO_MANY
        was_open = breaker.state == "open"
        if exc is TOO_MANY:
            if self.role == PROBE:
                breaker.record_success(PROBE)  # the server answered
            process.breaker_event(was_open)
            self.busy(answered=True)
            return
        self.budget.failures += 1
        self.last_error = exc
        breaker.record_failure(self.role, exc, self.budget, self.attempt_started)
        process.breaker_event(was_open)
        self.admit()

    def busy(self, *, answered: bool) -> None:
        process = self.process
        self.busy_failures += 1
        process.fleet.busy_refusals += 1
        if "per_caller_busy_backoff" not in process.fleet.model.what_if:
            if answered:
                process.busy_streak += 1
                gate = self.sim.now + process.busy_policy.delay(process.busy_streak)
                process.busy_gate = max(process.busy_gate, gate)
            if max(process.busy_gate - self.sim.now, 0.0) >= self.budget.remaining:
                process.finish(self.request, 503, "busy")
                return
            self._new_call()
            self.admit()
            return
        delay = self.process.busy_policy.delay(self.busy_failures)
        if delay >= self.budget.remaining:
            self.process.finish(self.request, 503, "busy")
            return
        self._new_call()
        self.sim.at(self.sim.now + delay, self.admit)


class StockCall:
    """Django's own backend: one attempt; an error is the answer."""

    def __init__(self, process: Process, request: Request) -> None:
        self.process = process
        self.request = request

    def start(self) -> None:
        self.process.fleet.node.connect(Dial(self.connected, self.failed))

    def connected(self) -> None:
        fleet, process = self.process.fleet, self.process

        def done() -> None:
            fleet.node.close()
            process.finish(self.request, 200, "ok")

        fleet.sim.at(fleet.sim.now + fleet.model.hold, done)

    def failed(self, exc: Any) -> None:
        self.process.finish(self.request, 500, "error")


class Fleet:
    def __init__(self, model: FleetModel, node: NodeModel) -> None:
        self.model = model
        self.sim = Sim()
        self.node = Node(self.sim, node, float(model.settings.connect_timeout))
        #: Times are relative to the move; the crash is at -outage.
        self.moved_at = 0.0
        self.opened_after_move = 0
        self.probes = 0
        self.busy_refusals = 0
        self.processes = [Process(self, i) for i in range(model.processes)]
        self.requests: list[Request] = []

    def run(self) -> dict[str, Any]:
        model, sim = self.model, self.sim
        start = -model.outage
        sim.now = start
        rng = random.Random(model.seed)
        t = start
        while True:
            t += rng.expovariate(model.request_rate)
            if t > model.horizon:
                break
            self.requests.append(Request(rng.randrange(model.processes), t))
        if model.herd:
            self.requests += [
                Request(i, start + rng.random() * model.outage) for i in range(model.processes)
            ]
        for request in self.requests:
            sim.at(request.arrival, lambda r=request: self.processes[r.process].arrive(r))

        def move() -> None:
            self.node.up = True

        sim.at(0.0, move)
        sim.run(model.horizon + 30.0)  # let the last requests finish
        return self.report()

    def report(self) -> dict[str, Any]:
        model = self.model
        requests = [r for r in self.requests if not math.isnan(r.end)]
        deadline = model.settings.deadline
        statuses = Counter(r.status for r in requests)
        degraded = [r.end for r in requests if r.status != 200 or r.end - r.arrival > model.slow]
        after_move = [t for t in self.node.attempt_times if t >= 0]
        per_second = Counter(int(t) for t in after_move)
        per_100ms = Counter(int(t * 10) for t in after_move)
        served = [p.served_after_move for p in self.processes]
        with_requests = {r.process for r in requests if r.arrival >= 0}
        first_served = [self.processes[i].served_after_move for i in with_requests]
        still_open = sum(1 for p in self.processes if p.breaker.state == "open")
        reopened_at = [p.ready_again_at for p in self.processes if p.ready_again_at is not None]
        latencies = sorted(r.end - r.arrival for r in requests)
        return {
            "processes": model.processes,
            "engine": model.engine,
            "outage_s": model.outage,
            "requests": len(self.requests),
            "answered": len(requests),
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "503_busy": sum(1 for r in requests if r.why == "busy"),
            "503_unavailable": sum(1 for r in requests if r.why == "unavailable"),
            "full_service_after_move_s": round(max(degraded, default=0.0), 3),
            # A process is ready when its breaker is not open: its next caller connects.
            "every_process_ready_s": (None if still_open else round(max([0.0, *reopened_at]), 3)),
            "processes_open_at_end": still_open,
            "every_process_with_a_request_served_s": (
                None
                if any(t is None for t in first_served)
                else round(max(first_served, default=0.0), 3)
            ),
            "processes_never_served": sum(1 for t in served if t is None),
            "attempts_while_down": self.node.refused_while_down,
            "attempts_after_move": len(after_move),
            "attempts_per_s_after_move": [per_second.get(i, 0) for i in range(15)],
            "peak_attempts_per_s": max(per_second.values(), default=0),
            "peak_attempts_per_s_100ms_window": 10 * max(per_100ms.values(), default=0),
            "new_primary_answers": dict(self.node.outcomes),
            "peak_in_flight_at_node": self.node.peak_in_flight,
            "peak_slots_in_use": self.node.peak_in_use,
            "peak_attempts_per_process": max((p.slots.peak for p in self.processes), default=0),
            "background_probes": self.probes,
            "busy_refusals_seen_by_callers": self.busy_refusals,
            "breaker_openings": sum(p.opened for p in self.processes),
            "breaker_openings_after_move": self.opened_after_move,
            "latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "latency_max_s": round(latencies[-1], 3) if latencies else None,
            "answered_within_deadline_plus_1s": all(
                r.end - r.arrival <= deadline + 1.0 for r in requests
            ),
        }


def check_classification() -> None:
    """The simulated errors mean what the package says they mean."""
    assert classify(REFUSED) is ErrorKind.CONNECTION
    assert classify(TIMED_OUT) is ErrorKind.CONNECTION
    assert classify(TOO_MANY) is ErrorKind.BUSY


def simulate(fleet: FleetModel, node: NodeModel | None = None) -> dict[str, Any]:
    """Run one simulation; return its figures (times in seconds after the move)."""
    check_classification()
    logger = logging.getLogger("django_pg_resilience")
    level, logger.level = logger.level, logging.CRITICAL
    try:
        return Fleet(fleet, node or NodeModel()).run()
    finally:
        logger.setLevel(level)
