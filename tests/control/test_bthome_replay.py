"""A replayed encrypted BTHome advert is refused by the fast path exactly when bthome-ble
itself (its own parser, fed the same adverts at the same times) refuses it."""

from __future__ import annotations

import pytest

from drivers.ble import Advert, DecodeError
from drivers.ble.bthome import BTHomeDriver, _BTHomeDecoder
from drivers.ble.simulator import bthome_v2, thermometer_objects
from tests.ble.helpers import BTHOME

ADDRESS = "54:48:E6:8F:80:A5"
KEY = bytes(range(16))


def payload(counter: int, temperature: float) -> bytes:
    """An encrypted thermometer advert under ``KEY`` with encryption counter ``counter``."""
    body = thermometer_objects(counter & 0xFF, 90, temperature, 40.0)
    return bthome_v2(body, address=ADDRESS, bind_key=KEY, counter=counter)


class Both:
    """The hub's decoder (fast path) and bthome-ble's parser, fed the same adverts."""

    def __init__(self) -> None:
        self.fast = BTHomeDriver().decoder(KEY)
        self.reference = _BTHomeDecoder(KEY)

    def feed(self, data: bytes, now: float) -> tuple[bool, bool]:
        """Return (fast path decoded a reading, bthome-ble decoded a reading)."""
        advert = Advert(ADDRESS, -60, None, {BTHOME: data})
        try:
            fast = bool(self.fast.decode(advert, data, now).fields)
        except DecodeError:
            fast = False
        return fast, bool(self.reference.full(advert, data, now).fields)


@pytest.mark.parametrize("later_s", [11.0, 60.0])
def test_the_last_advert_replayed_later_is_refused_as_bthome_ble_refuses_it(
    later_s: float,
) -> None:
    both = Both()
    assert both.feed(payload(500, 20.0), 1.0) == (True, True)
    assert both.feed(payload(501, 20.5), 2.0) == (True, True)
    assert both.feed(payload(501, 20.5), 2.0 + later_s) == (False, False)
    assert both.feed(payload(502, 21.0), 3.0 + later_s) == (True, True)  # fresh adverts pass


@pytest.mark.parametrize("later_s", [11.0, 60.0])
def test_an_older_advert_replayed_later_is_refused(later_s: float) -> None:
    both = Both()
    old = payload(500, 20.0)
    assert both.feed(old, 1.0) == (True, True)
    assert both.feed(payload(501, 20.5), 2.0) == (True, True)
    assert both.feed(old, 2.0 + later_s) == (False, False)


def test_a_device_that_restarted_counting_is_accepted_by_both() -> None:
    both = Both()
    assert both.feed(payload(5000, 20.0), 1.0) == (True, True)
    assert both.feed(payload(3, 21.0), 20.0) == (True, True)  # below 100: battery change
    assert both.feed(payload(3, 21.0), 40.0) == (False, False)  # but not twice
    assert both.feed(payload(4, 21.5), 41.0) == (True, True)
