"""The driver registry: built-in drivers plus plug-ins of entry-point group ``consentgate.drivers``.

No folder scanning: a driver is built in by being listed in ``BUILTIN_DRIVERS`` below, or
plugged in by a distribution declaring an entry point whose object satisfies
``drivers.base.Driver`` (checked at load time; a broken plug-in is logged and skipped).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Final, Protocol

from drivers import ble, homekit, shelly, simulator, wled
from drivers.base import Driver, DriverSpec, HttpRpcDriver, Match, check_driver
from drivers.lan import inventory

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "consentgate.drivers"

# The simulator's field catalogue lives with it (drivers/simulator.py); it matches nothing.
SIMULATOR_FIELDS: Final = simulator.FIELDS
SIMULATOR: Final = DriverSpec(name=simulator.DRIVER, match=Match(), fields=simulator.FIELDS)

# The built-in drivers. To add some, import their module above and list their driver objects
# here.
BUILTIN_DRIVERS: Final[tuple[Driver, ...]] = (
    SIMULATOR,
    shelly.DRIVER,
    wled.DRIVER,
    homekit.DRIVER,
    *inventory.DRIVERS,
    *ble.DRIVERS,
)


class Plugin(Protocol):
    """What load_drivers needs of an ``importlib.metadata.EntryPoint``."""

    @property
    def name(self) -> str:
        """Return the entry point's name."""
        ...

    def load(self) -> Any:
        """Import and return the entry point's object."""
        ...


def load_drivers(
    plugins: Iterable[Plugin] = (), builtins: Iterable[Driver] = BUILTIN_DRIVERS
) -> dict[str, Driver]:
    """Return name -> driver for ``builtins`` plus the valid, non-clashing ``plugins``."""
    found: dict[str, Driver] = {}
    for driver in builtins:
        problems = check_driver(driver)
        if problems:
            raise ValueError(f"built-in driver {driver!r}: {'; '.join(problems)}")
        if driver.name in found:
            raise ValueError(f"built-in driver name {driver.name!r} used twice")
        found[driver.name] = driver
    for plugin in plugins:
        try:
            driver = plugin.load()
        except (ImportError, AttributeError) as exc:
            logger.error(  # noqa: TRY400 - the reason is enough, a traceback is noise
                "driver plug-in not loaded", extra={"plugin": plugin.name, "detail": str(exc)}
            )
            continue
        problems = check_driver(driver)
        if not problems and driver.name in found:
            problems = [f"name {driver.name!r} is already taken"]
        if problems:
            logger.error(
                "driver plug-in rejected",
                extra={"plugin": plugin.name, "detail": "; ".join(problems)},
            )
            continue
        found[driver.name] = driver
    return found


@functools.cache
def registry() -> Mapping[str, Driver]:
    """Return every usable driver by name (built-ins plus installed plug-ins, loaded once)."""
    return MappingProxyType(load_drivers(entry_points(group=ENTRY_POINT_GROUP)))


def get_driver(name: str) -> Driver | None:
    """Return the driver called ``name``, or None."""
    return registry().get(name)


def field_category(driver_name: str, field: str) -> str | None:
    """Return the data category of ``field`` emitted by driver ``driver_name`` (None if unknown)."""
    driver = registry().get(driver_name)
    return None if driver is None else driver.fields.get(field)


def mdns_drivers(drivers: Mapping[str, Driver] | None = None) -> dict[str, HttpRpcDriver]:
    """Return lowercase mDNS service type -> the HTTP RPC driver that declared it."""
    by_type: dict[str, HttpRpcDriver] = {}
    for driver in (registry() if drivers is None else drivers).values():
        if isinstance(driver, HttpRpcDriver):
            for service_type in driver.match.mdns_types:
                by_type.setdefault(service_type.lower(), driver)
    return by_type


def announced_drivers(drivers: Mapping[str, Driver] | None = None) -> dict[str, Driver]:
    """Return lowercase mDNS service type -> driver, for every driver found over DNS-SD."""
    by_type: dict[str, Driver] = {}
    for driver in (registry() if drivers is None else drivers).values():
        if isinstance(driver, HttpRpcDriver) or callable(getattr(driver, "parse_listing", None)):
            for service_type in driver.match.mdns_types:
                by_type.setdefault(service_type.lower(), driver)
    return by_type


__all__ = [
    "BUILTIN_DRIVERS",
    "ENTRY_POINT_GROUP",
    "SIMULATOR",
    "SIMULATOR_FIELDS",
    "Driver",
    "announced_drivers",
    "field_category",
    "get_driver",
    "load_drivers",
    "mdns_drivers",
    "registry",
]
