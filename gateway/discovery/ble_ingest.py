"""The per-advertisement path of BLE discovery, with no I/O: filter, match, dedupe, decode.

The scanner shell (``gateway.discovery.ble``) calls these steps in this order for every
advertisement bleak reports; the benchmark (``bench.ble_adverts``) calls the same ones. The
cheap steps come first so that most advertisements never reach a decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from drivers.ble import Advert, BleDecoder, BleDriver, Decoded, DecodeError, match
from drivers.ble.dedupe import DEFAULT_WINDOW_S, Deduper
from gateway.config import BleConfig
from gateway.counters import Counters

logger = logging.getLogger(__name__)

BindKeys = Callable[[str], bytes | None]
"""Returns the bind key of the device with this address, if it has one."""


class BleIngest:
    """Filters, matches, de-duplicates and decodes advertisements; counts every outcome.

    Counters: ``ble.adverts`` (all), ``ble.filtered`` (allow/deny/RSSI), ``ble.unmatched``,
    ``ble.duplicates``, ``ble.decoded``, ``ble.decode_errors``, ``ble.unmapped_fields``.
    """

    __slots__ = (
        "_allow",
        "_bind_keys",
        "_counters",
        "_decoders",
        "_deduper",
        "_deny",
        "_match",
        "_min_rssi",
    )

    def __init__(
        self,
        config: BleConfig,
        counters: Counters,
        *,
        bind_keys: BindKeys | None = None,
        matcher: Callable[[Advert], BleDriver | None] = match,
        dedupe_window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self._allow = config.allow
        self._deny = config.deny
        self._min_rssi = config.min_rssi
        self._counters = counters
        self._bind_keys = bind_keys
        self._match = matcher
        self._deduper = Deduper(dedupe_window_s)
        # address -> (driver name, decoder): only devices decoded through ``decode``
        self._decoders: dict[str, tuple[str, BleDecoder]] = {}

    def classify(self, advert: Advert) -> tuple[BleDriver, bytes] | None:
        """Return the driver of ``advert`` and the bytes it decodes; None if filtered out."""
        counters = self._counters
        counters.inc("ble.adverts")
        address = advert.address
        if (
            address in self._deny
            or (self._allow and address not in self._allow)
            or advert.rssi < self._min_rssi
        ):
            counters.inc("ble.filtered")
            return None
        driver = self._match(advert)
        payload = None if driver is None else driver.payload(advert)
        if driver is None or payload is None:
            counters.inc("ble.unmatched")
            return None
        return driver, payload

    def is_duplicate(self, address: str, driver: BleDriver, payload: bytes, now: float) -> bool:
        """Return True (and count it) if ``payload`` repeats the address's last message."""
        if self._deduper.is_duplicate(address, payload, driver.packet_id(payload), now):
            self._counters.inc("ble.duplicates")
            return True
        return False

    def decode(
        self, advert: Advert, driver: BleDriver, payload: bytes, now: float
    ) -> Decoded | None:
        """Decode with the device's own decoder (kept, with its bind key); None on error."""
        entry = self._decoders.get(advert.address)
        if entry is None or entry[0] != driver.name:
            try:
                key = None if self._bind_keys is None else self._bind_keys(advert.address)
                entry = (driver.name, driver.decoder(key))
            except DecodeError:
                self._counters.inc("ble.decode_errors")
                return None
            self._decoders[advert.address] = entry
        return self._run(entry[1], advert, payload, now)

    def forget(self, address: str) -> None:
        """Drop the decoder and duplicate state of ``address`` (unpaired, or key changed)."""
        self._decoders.pop(address, None)
        self._deduper.forget(address)

    def _run(
        self, decoder: BleDecoder, advert: Advert, payload: bytes, now: float
    ) -> Decoded | None:
        counters = self._counters
        try:
            decoded = decoder.decode(advert, payload, now)
        except DecodeError:
            counters.inc("ble.decode_errors")
            return None
        counters.inc("ble.decoded")
        if decoded.unmapped:
            counters.inc("ble.unmapped_fields", decoded.unmapped)
        return decoded
