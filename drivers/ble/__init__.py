"""BLE device drivers: matchers and field catalogues as data, decoding by field libraries.

``DRIVERS`` are ``drivers.base.Driver`` objects for the driver registry; ``match(advert)`` picks
the driver of an advertisement (pure, cached by the advertisement's shape); each driver's
``fields`` maps every field it emits to exactly one data category.
"""

from __future__ import annotations

from typing import Final

from drivers.ble.advert import Advert
from drivers.ble.bthome import BTHomeDriver
from drivers.ble.driver import BleDecoder, BleDriver, Decoded, DecodeError
from drivers.ble.matching import Matcher
from drivers.ble.theengs import MiBeaconDriver, MiScaleDriver

__all__ = ["DRIVERS", "Advert", "BleDecoder", "BleDriver", "DecodeError", "Decoded", "match"]

DRIVERS: Final[tuple[BleDriver, ...]] = (BTHomeDriver(), MiBeaconDriver(), MiScaleDriver())
"""The built-in BLE drivers, in matching priority order."""

_MATCHER: Final = Matcher(DRIVERS)
match: Final = _MATCHER.match
"""Return the built-in driver that handles an advertisement, or None (``Matcher.match``)."""
