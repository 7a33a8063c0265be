"""Liveness of unpaired mDNS services: ask for their SRV record, notice every answer.

zeroconf answers repeated look-ups from its cache and reports a service gone only when its
PTR record expires (75 min for the usual 4500 s TTL), so a candidate that vanished without a
goodbye would stay "online" far beyond ``offline_after_s``. Instead we send a plain multicast
query for the SRV record of each watched service (RFC 6762 s5.2, without a known-answer list so
the responder must answer, s7.1) and count every record received for it as a sign of life.
Responders answer a given record at most once per second (RFC 6762 s6), so keep
``offline_after_s`` above that.
"""

from __future__ import annotations

from collections.abc import Callable

from zeroconf import RecordUpdate, RecordUpdateListener, Zeroconf

# Also importable from ``zeroconf`` itself, but not listed in its __all__ (typed imports here).
from zeroconf._dns import DNSQuestion
from zeroconf._protocol.outgoing import DNSOutgoing

# RFC 1035 s4.1.1 (QR=0: query), RFC 2782 (SRV is type 33), RFC 1035 s3.2.4 (class IN).
_FLAGS_QUERY = 0x0000
_TYPE_SRV = 33
_CLASS_IN = 1


class Liveness(RecordUpdateListener):
    """Calls ``on_alive(service_name)`` whenever a live record of a watched service arrives."""

    def __init__(self, zc: Zeroconf, on_alive: Callable[[str], None]) -> None:
        super().__init__()
        self._zc = zc
        self._on_alive = on_alive
        self._watched: set[str] = set()

    def start(self) -> None:
        """Begin listening to every record zeroconf receives (event loop only)."""
        self._zc.async_add_listener(self, None)

    def stop(self) -> None:
        """Stop listening (event loop only)."""
        self._zc.async_remove_listener(self)

    def watch(self, name: str) -> None:
        """Report answers for service instance ``name`` from now on."""
        self._watched.add(name.lower())

    def unwatch(self, name: str) -> None:
        """Stop reporting answers for ``name``."""
        self._watched.discard(name.lower())

    def query(self, name: str) -> None:
        """Multicast one SRV question for ``name`` (the answer arrives through the listener)."""
        out = DNSOutgoing(_FLAGS_QUERY, multicast=True)
        out.add_question(DNSQuestion(name, _TYPE_SRV, _CLASS_IN))
        self._zc.async_send(out)

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        """Report the watched services among ``records`` that are alive (goodbyes excluded)."""
        if not self._watched:
            return
        alive = {
            update.new.name.lower() for update in records if not update.new.is_expired(now)
        } & self._watched
        for name in alive:
            self._on_alive(name)
