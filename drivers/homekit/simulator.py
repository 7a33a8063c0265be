"""A simulated HomeKit accessory for tests, the demo and benchmarks: HAP-python (the field's
accessory implementation) serving a temperature and humidity sensor with a battery on
127.0.0.1, announced on its own zeroconf bound to the given interfaces (never the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncZeroconf

SETUP_CODE: Final = "031-45-154"
Database = dict[str, Any]  # one accessory's object in ``GET /accessories`` (HAP R2 s6.6)


class SimulatedAccessory:
    """One HAP-python sensor accessory; an async context manager. ``temperature`` is live."""

    def __init__(
        self,
        *,
        name: str = "Thermo",
        setup_code: str = SETUP_CODE,
        interfaces: Sequence[str] = ("127.0.0.1",),
        host: str = "127.0.0.1",
        interval_s: float = 0.2,
        database: Callable[[Database], Database] | None = None,
        refuse_right_code: int = 0,
    ) -> None:
        self.name = name
        self.setup_code = setup_code
        self.interfaces = list(interfaces)
        self.host = host
        self.interval_s = interval_s
        self.database = database  # rewrites the served accessory database (a faulty device)
        # the first pair-setups refuse the right code, as an accessory whose SRP does not pad
        # its values does now and then (HAP-python itself: about once in a hundred)
        self.refuse_right_code = refuse_right_code
        self.pair_setups = 0  # pair-setups started (M1 received)
        self.temperature = 21.5
        self.humidity = 40.0
        self._dir = tempfile.TemporaryDirectory(prefix="cg-hap-")
        self._driver: Any = None
        self._azc: AsyncZeroconf | None = None

    @property
    def device_id(self) -> str:
        """Return the accessory's HAP pairing identifier (the ``id`` TXT key), lowercase."""
        return str(self._driver.state.mac).lower()

    def is_paired(self) -> bool:
        """Return whether a controller holds a pairing with the accessory."""
        return bool(self._driver is not None and self._driver.state.paired)

    async def withdraw(self) -> None:
        """Withdraw the mDNS announcement (goodbye packets); the HAP server keeps running."""
        await self._driver.advertiser.async_unregister_service(self._driver.mdns_service_info)

    async def announce(self) -> None:
        """Announce the accessory again after ``withdraw``."""
        await self._driver.advertiser.async_register_service(
            self._driver.mdns_service_info, cooperating_responders=True
        )

    async def __aenter__(self) -> Self:
        from pyhap.accessory import Accessory  # noqa: PLC0415
        from pyhap.accessory_driver import AccessoryDriver  # noqa: PLC0415
        from pyhap.const import CATEGORY_SENSOR  # noqa: PLC0415

        outer = self

        class Sensor(Accessory):  # type: ignore[misc]
            category = CATEGORY_SENSOR

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.t = self.add_preload_service("TemperatureSensor").configure_char(
                    "CurrentTemperature"
                )
                self.h = self.add_preload_service("HumiditySensor").configure_char(
                    "CurrentRelativeHumidity"
                )
                battery = self.add_preload_service("BatteryService")
                self.b = battery.configure_char("BatteryLevel", value=87)
                self.set_info_service(
                    firmware_revision="1.2.3", manufacturer="Acme", model="T1000",
                    serial_number="SN42",
                )  # fmt: skip

            def to_HAP(self, include_value: bool = True) -> Database:  # noqa: N802
                """Return the accessory database served, rewritten by ``database`` if given."""
                served: Database = super().to_HAP(include_value)
                return served if outer.database is None else outer.database(served)

            @Accessory.run_at_interval(outer.interval_s)  # type: ignore[untyped-decorator]
            async def run(self) -> None:
                self.t.set_value(outer.temperature)
                self.h.set_value(outer.humidity)

        class Driver(AccessoryDriver):  # type: ignore[misc]
            def setup_srp_verifier(self) -> None:
                """Start a pair-setup; refuse its proof while ``refuse_right_code`` says so."""
                super().setup_srp_verifier()
                outer.pair_setups += 1
                if outer.pair_setups <= outer.refuse_right_code:
                    self.srp_verifier.verify = lambda _proof: None

        self._azc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
        self._driver = Driver(
            port=_free_port(self.host),
            address=self.host,
            persist_file=os.path.join(self._dir.name, "accessory.state"),
            pincode=self.setup_code.encode(),
            loop=asyncio.get_running_loop(),
            async_zeroconf_instance=self._azc,
        )
        self._driver.add_accessory(Sensor(self._driver, self.name))
        with contextlib.redirect_stdout(io.StringIO()):  # HAP-python prints the setup code
            await self._driver.async_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._driver is not None:
            await self._driver.async_stop()
        if self._azc is not None:
            await self._azc.async_close()
        self._dir.cleanup()


def _free_port(host: str) -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
