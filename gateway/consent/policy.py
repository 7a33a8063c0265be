"""The consent state and the decisions derived from it: pure, in memory, no I/O.

Hub-wide flags plus per-device overrides plus the Try Now switch. The pipeline asks it at
collection (``decide``), the publisher asks it again just before every publish (``forwardable``),
and transports subscribe to changes: the ``bluetooth`` flag governs no data category but the
radio itself, so the BLE scanner stops and starts with it (``flag("bluetooth")``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.consent.catalogue import (
    CATEGORIES,
    COARSE,
    DEFAULT_FLAGS,
    DEVICE_BASIC,
    OFF,
    ON,
)

Listener = Callable[["ConsentPolicy"], None]


class ConsentPolicy:
    """Current consent flags; ``version`` increases with every change."""

    def __init__(
        self,
        flags: Mapping[str, str] | None = None,
        devices: Mapping[str, Mapping[str, str]] | None = None,
        *,
        try_now: bool = False,
        restricted: bool = False,
        version: int = 0,
    ) -> None:
        self._flags = dict(DEFAULT_FLAGS)
        self._flags.update(flags or {})
        self._devices = {d: dict(o) for d, o in (devices or {}).items()}
        self.try_now = try_now
        self.restricted = restricted
        self.version = version
        self._listeners: list[Listener] = []
        # decision cache: (device, category) -> state; cleared on every change
        self._cache: dict[tuple[str, str], str] = {}

    # --- reading -------------------------------------------------------------------------
    def flag(self, flag: str, device: str | None = None) -> str:
        """Return the effective state of ``flag`` for ``device`` (hub-wide when None)."""
        if device is not None:
            override = self._devices.get(device, {}).get(flag)
            if override is not None:
                return override
        return self._flags[flag]

    def decide(self, device: str, category: str) -> str:
        """Return ``on``, ``off`` or ``coarse``: what may be collected of ``category`` now."""
        key = (device, category)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        state = self._decide(device, category)
        self._cache[key] = state
        return state

    def _decide(self, device: str, category: str) -> str:
        if category == DEVICE_BASIC:
            return ON
        if self.try_now or self.restricted:
            return OFF
        flag = CATEGORIES[category].flag
        if flag is None:
            return ON
        return self.flag(flag, device)

    def forwardable(self, device: str, category: str) -> bool:
        """Return whether a sealed record of ``category`` may be published right now.

        A coarse-only state forwards only categories that are themselves coarse forms
        (the desensitise stage rewrote precise ones before sealing).
        """
        state = self.decide(device, category)
        if state == ON:
            return True
        return state == COARSE and CATEGORIES[category].coarse_form is None

    def snapshot(self) -> dict[str, object]:
        """Return the JSON-able state shown on ``consent/get`` and the retained consent topic."""
        return {
            "version": self.version,
            "flags": dict(self._flags),
            "devices": {d: dict(o) for d, o in sorted(self._devices.items()) if o},
            "try_now": self.try_now,
            "restricted": self.restricted,
        }

    @property
    def flags(self) -> Mapping[str, str]:
        """Return the hub-wide flags (read-only view)."""
        return MappingProxyType(self._flags)

    @property
    def overrides(self) -> Mapping[str, Mapping[str, str]]:
        """Return the per-device overrides (read-only view)."""
        return MappingProxyType(self._devices)

    # --- changing ------------------------------------------------------------------------
    def set_flag(self, flag: str, state: str, device: str | None = None) -> None:
        """Set ``flag`` to ``state`` hub-wide or for one device (inputs validated by the caller)."""
        if device is None:
            self._flags[flag] = state
        else:
            self._devices.setdefault(device, {})[flag] = state
        self._changed()

    def set_try_now(self, enabled: bool) -> None:
        """Switch Try Now mode: while on, nothing but pseudonymous ``device.basic`` is collected."""
        self.try_now = enabled
        self._changed()

    def set_restricted(self, enabled: bool) -> None:
        """Switch restriction: while on, nothing personal is collected or forwarded."""
        self.restricted = enabled
        self._changed()

    def forget_device(self, device: str) -> None:
        """Drop every override of ``device`` (after unpair or erase)."""
        if self._devices.pop(device, None) is not None:
            self._changed()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(policy)`` after every change; return a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()
        for listener in list(self._listeners):
            listener(self)
