"""ICE settings shared by the WebRTC client and server: which servers, which addresses.

aiortc contacts Google's public STUN server unless it is given an explicit, possibly
empty, list of ICE servers; `rtc_configuration` always gives one.

aioice gathers host candidates on every address of every interface except 127.0.0.1,
and offers no setting to choose them (aiortc/aioice#2 and #57 are still open). A pod
must offer its pod IP and nothing else, and tests must stay on loopback, so
`gathering_on(addresses)` chooses them. It is the one place Tether patches a
dependency: aioice's module-level `get_host_addresses`, which `Connection.gather_candidates`
calls, is replaced once by a function that answers from a context variable and falls
back to aioice's own answer where none is set. Peer connections with different
settings therefore never see each other's: asyncio copies the context into the tasks
aiortc starts to gather, and every gathering happens inside
`RTCPeerConnection.setLocalDescription`, which `set_local_description` wraps.

Gathering is checked afterwards (`host_candidate_addresses`), so a future aioice that
stops calling the patched function fails loudly instead of offering every interface.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

_chosen: Final[ContextVar[tuple[str, ...] | None]] = ContextVar(
    "tether_ice_host_addresses", default=None
)
_aioice_get_host_addresses: Final = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        return _aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [address for address in chosen if wanted[ipaddress.ip_address(address).version]]


def _patch_aioice() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


def normalize_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """Check that every entry is a literal IP address (no names, no interfaces)."""
    normalized = []
    for address in addresses:
        try:
            normalized.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise ValueError(f"ICE host address {address!r} is not an IP address") from None
    return tuple(normalized)


@contextlib.contextmanager
def gathering_on(addresses: Sequence[str]) -> Iterator[None]:
    """Inside this block, and in tasks started inside it, aioice gathers host candidates
    on exactly `addresses`."""
    _patch_aioice()
    token = _chosen.set(normalize_addresses(addresses))
    try:
        yield
    finally:
        _chosen.reset(token)


async def set_local_description(
    pc: RTCPeerConnection, description: RTCSessionDescription, addresses: Sequence[str]
) -> None:
    """`pc.setLocalDescription`, gathering host candidates on `addresses` only."""
    with gathering_on(addresses):
        await pc.setLocalDescription(description)


def rtc_configuration(ice_servers: Iterable[str]) -> RTCConfiguration:
    """An explicit ICE server list, empty by default: nothing outside is ever contacted."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])


@dataclass(frozen=True)
class SdpCandidate:
    address: str
    port: int
    type: str
    """host, srflx, prflx or relay."""


def sdp_candidates(sdp: str) -> list[SdpCandidate]:
    """Every `a=candidate` line of a session description (RFC 8839 section 5.1)."""
    candidates = []
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        fields = line.split()
        # foundation component transport priority address port "typ" type ...
        if len(fields) >= 8 and fields[6] == "typ":
            candidates.append(SdpCandidate(fields[4], int(fields[5]), fields[7]))
    return candidates


def unexpected_host_candidates(sdp: str, addresses: Sequence[str]) -> list[str]:
    """Host candidate addresses in `sdp` that are not among `addresses`."""
    allowed = set(normalize_addresses(addresses))
    return [c.address for c in sdp_candidates(sdp) if c.type == "host" and c.address not in allowed]
