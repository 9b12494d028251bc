"""A network namespace of the test's own: a peer that can go silent, not even ACKing.

::

    from django_pg_resilience.testing import NetworkNamespace, netns_unavailable_reason

    with NetworkNamespace() as namespace:
        namespace.address        # "10.255.3.2": inside the namespace
        namespace.host_address   # "10.255.3.1": this side of the veth pair
        subprocess.run([*namespace.exec_prefix, "some-server", "--listen", namespace.address])
        namespace.silence()      # every reply to host_address vanishes
        namespace.restore()      # and flows again

``LocalCluster(netns=True)`` runs its primary inside one (its standbys stream
from it through the veth pair): ``cluster.namespace.silence()``.

:meth:`NetworkNamespace.silence` adds a blackhole route to the host's address
inside the namespace. What the peer sends (SYN-ACKs, ACKs, answers, RSTs) is
dropped before it leaves: from outside it is a dead VM whose address still
routes. Open connections stay open and hear nothing; new ones time out in
connect. Unlike :class:`EndpointProxy`'s blackhole, nothing ACKs on its behalf,
so TCP keepalives and ``tcp_user_timeout`` do fire. The peer still receives and
runs what it is sent (a statement sent into the silence may have run).

Both ends are on this machine: a free /30 in 10.255.0.0/16, a namespace named
``pg-resilience-N``, a veth pair ``pgrNh``/``pgrNn``. Creating them needs root
(or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ``ip``:
:func:`netns_unavailable_reason` says why not, for a skip.

:meth:`NetworkNamespace.close` kills whatever still runs inside, then deletes
the veth pair and the namespace; a reaper process does the same if this
process dies without closing.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import shutil
import subprocess
import sys

__all__ = ["NetworkNamespace", "netns_available", "netns_unavailable_reason"]

_SUBNETS = ipaddress.ip_network("10.255.0.0/16")
_SUBNET_COUNT = _SUBNETS.num_addresses // 4
_CAP_SYS_ADMIN, _CAP_NET_ADMIN = 21, 12

# Runs in the reaper, and is how close() tears down too: wait for EOF on stdin;
# if the owner died (nothing was written), give what runs inside a moment to stop
# on its own (LocalCluster's reaper stops its servers); kill what is left, then
# delete the veth pair and the namespace.
_TEARDOWN = """
import os, signal, subprocess, sys, time
closed = sys.stdin.read()
name, link = sys.argv[1], sys.argv[2]

def inside():
    out = subprocess.run(['ip', 'netns', 'pids', name], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]

deadline = time.monotonic() + (0 if closed else float(sys.argv[3]))
while inside() and time.monotonic() < deadline:
    time.sleep(0.05)
for pid in inside():
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
subprocess.run(['ip', 'link', 'del', link], capture_output=True)
subprocess.run(['ip', 'netns', 'del', name], capture_output=True)
"""


def _effective_capabilities() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


@functools.cache
def _probe_namespace() -> str | None:
    """Create and delete a namespace once: containers may refuse even root."""
    name = f"pg-resilience-probe-{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` failed here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def netns_unavailable_reason() -> str | None:
    """Why this process cannot create network namespaces, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing: apt-get install iproute2"
    needed = (1 << _CAP_SYS_ADMIN) | (1 << _CAP_NET_ADMIN)
    if os.geteuid() != 0 and _effective_capabilities() & needed != needed:
        return "creating network namespaces needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    return _probe_namespace()


def netns_available() -> bool:
    """Whether :class:`NetworkNamespace` can be used here."""
    return netns_unavailable_reason() is None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _taken_addresses() -> set[ipaddress.IPv4Address]:
    """Addresses of 10.255.0.0/16 this machine already uses, as an address or a route."""
    text = (
        _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    )
    taken: set[ipaddress.IPv4Address] = set()
    for word in text.split():
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(word, strict=False)
            if isinstance(network, ipaddress.IPv4Network) and network.overlaps(_SUBNETS):
                taken.update(network if network.prefixlen >= 24 else [network.network_address])
    return taken


class NetworkNamespace:
    """A namespace joined to this one by a veth pair, with a /30 of its own. See the module docs."""

    def __init__(self, teardown_grace: float = 3.0) -> None:
        self.name = ""
        self.address = ""
        self.host_address = ""
        self.host_link = ""
        self.silenced = False
        self._teardown_grace = teardown_grace
        self._reaper: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<NetworkNamespace {self.name} {self.address} via {self.host_address}>"

    def __enter__(self) -> NetworkNamespace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def exec_prefix(self) -> list[str]:
        """The command prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def start(self) -> NetworkNamespace:
        """Claim a free /30 and a name, create the namespace and the veth pair."""
        reason = netns_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"cannot create a network namespace: {reason}")
        taken = _taken_addresses()
        first = os.getpid() % _SUBNET_COUNT  # parallel test processes start apart
        for offset in range(_SUBNET_COUNT):
            index = (first + offset) % _SUBNET_COUNT
            base = _SUBNETS.network_address + 4 * index
            if any(base + host in taken for host in range(4)):
                continue
            # `ip netns add` fails when the name exists: the claim is atomic.
            if _ip("netns", "add", f"pg-resilience-{index}", check=False).returncode != 0:
                continue
            self.name = f"pg-resilience-{index}"
            self.host_link = f"pgr{index}h"
            self.host_address, self.address = str(base + 1), str(base + 2)
            break
        else:
            raise RuntimeError("no free /30 left in 10.255.0.0/16 for a network namespace")
        self._start_reaper()
        try:
            peer = f"pgr{self.name.rsplit('-', 1)[1]}n"
            _ip(
                "link",
                "add",
                self.host_link,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                self.name,
            )
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", peer)
            _ip("-n", self.name, "link", "set", peer, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def _start_reaper(self) -> None:
        self._reaper = subprocess.Popen(
            [sys.executable, "-c", _TEARDOWN, self.name, self.host_link, str(self._teardown_grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to our process group must not kill it first
        )

    def silence(self) -> None:
        """From now on nothing the namespace sends to this side leaves it."""
        _ip("-n", self.name, "route", "replace", "blackhole", f"{self.host_address}/32")
        self.silenced = True

    def restore(self) -> None:
        """Undo :meth:`silence`: replies flow again (TCP retransmits what was held back)."""
        _ip("-n", self.name, "route", "del", "blackhole", f"{self.host_address}/32", check=False)
        self.silenced = False

    def close(self) -> None:
        """Kill what still runs inside, delete the veth pair and the namespace. Idempotent."""
        reaper, self._reaper = self._reaper, None
        if reaper is None:
            return
        # A word and EOF on its stdin tell the reaper to tear down now; EOF alone
        # (this process died) makes it wait for the servers' own reaper first.
        with contextlib.suppress(OSError):
            assert reaper.stdin is not None
            reaper.stdin.write(b"close")
            reaper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            reaper.wait(timeout=self._teardown_grace + 30)
