"""The data-category catalogue (docs/data-categories.md) as data.

Every field a driver emits belongs to exactly one category; each category is governed by one
consent flag. ``device.basic`` is the service category: it is always collected (pseudonymously).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Category:
    """One data category: its governing flag, whether it is sensitive, its coarse form if any."""

    name: str
    flag: str | None
    sensitive: bool
    coarse_form: str | None = None
    desensitise: str | None = None


# How a category is desensitised when its flag is "coarse" (besides location, whose coarse form
# is its own category): identifiers replaced by keyed-hash pseudonyms, or readings replaced by
# min/mean/max per window.
PSEUDONYMISE: Final = "pseudonymise"
AGGREGATE: Final = "aggregate"

DEVICE_BASIC: Final = "device.basic"
DEVICE_NETWORK: Final = "device.network"
TELEMETRY_ENVIRONMENT: Final = "telemetry.environment"
HEALTH: Final = "health"
LOCATION_PRECISE: Final = "location.precise"
LOCATION_COARSE: Final = "location.coarse"
MEDIA_CAMERA: Final = "media.camera"
MEDIA_AUDIO: Final = "media.audio"
USAGE: Final = "usage"

CATEGORIES: Final = MappingProxyType(
    {
        c.name: c
        for c in (
            Category(DEVICE_BASIC, None, sensitive=False),
            Category(DEVICE_NETWORK, "network", sensitive=False, desensitise=PSEUDONYMISE),
            Category(TELEMETRY_ENVIRONMENT, "telemetry", sensitive=False, desensitise=AGGREGATE),
            Category(HEALTH, "health", sensitive=True, desensitise=AGGREGATE),
            Category(LOCATION_PRECISE, "location", sensitive=True, coarse_form=LOCATION_COARSE),
            Category(LOCATION_COARSE, "location", sensitive=False),
            Category(MEDIA_CAMERA, "camera", sensitive=True),
            Category(MEDIA_AUDIO, "microphone", sensitive=True),
            Category(USAGE, "data_analysis", sensitive=False, desensitise=AGGREGATE),
        )
    }
)

# Flag states: "on" forwards raw readings, "off" collects nothing, "coarse" (only for flags that
# govern a category with a coarse form) forwards the desensitised form only.
ON: Final = "on"
OFF: Final = "off"
COARSE: Final = "coarse"
STATES: Final = (ON, OFF, COARSE)

# Default state of every flag (docs/data-categories.md): sensitive and persistent identifiers off.
DEFAULT_FLAGS: Final = MappingProxyType(
    {
        "network": OFF,
        "telemetry": ON,
        "health": OFF,
        "location": OFF,
        "camera": OFF,
        "microphone": OFF,
        "data_analysis": OFF,
        "bluetooth": ON,
    }
)

FLAGS: Final = tuple(DEFAULT_FLAGS)
COARSE_FLAGS: Final = frozenset(
    c.flag
    for c in CATEGORIES.values()
    if (c.coarse_form is not None or c.desensitise is not None) and c.flag is not None
)
COARSE_FORMS: Final = frozenset(c.coarse_form for c in CATEGORIES.values() if c.coarse_form)


def flag_of(category: str) -> str | None:
    """Return the flag governing ``category`` (None: the service category); KeyError if unknown."""
    return CATEGORIES[category].flag
