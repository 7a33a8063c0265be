"""How data is desensitised where its category's consent is coarse: the pipeline's stages that
do it (coarse location, pseudonymised identifiers, aggregates only) and their pure transforms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from gateway.consent.aggregate import Aggregator
from gateway.consent.catalogue import (
    AGGREGATE,
    CATEGORIES,
    COARSE,
    LOCATION_COARSE,
    LOCATION_PRECISE,
    PSEUDONYMISE,
)
from gateway.consent.policy import ConsentPolicy
from gateway.model import Observation, Value

# Coarse location: coordinates rounded to 0.1 degree (about 11 km of latitude), city level.
COARSE_DECIMALS: Final = 1
_Stage = Callable[[list[Observation]], list[Observation]]


def desensitise(policy: ConsentPolicy) -> _Stage:
    """Return the stage that turns precise location into coarse where only coarse is allowed."""

    def stage(observations: list[Observation]) -> list[Observation]:
        return [
            coarsen(obs)
            if obs.category == LOCATION_PRECISE
            and policy.decide(obs.device, obs.category) == COARSE
            else obs
            for obs in observations
        ]

    return stage


def pseudonymise(policy: ConsentPolicy, keyed_hash: Callable[[bytes], bytes]) -> _Stage:
    """Return the stage that, where ``network`` is coarse, replaces identifiers (MAC, SSID, IP:
    every text or bytes value of ``device.network``) by keyed-hash pseudonyms; numbers stay."""

    def stage(observations: list[Observation]) -> list[Observation]:
        return [
            pseudonymised(obs, keyed_hash)
            if CATEGORIES[obs.category].desensitise == PSEUDONYMISE
            and policy.decide(obs.device, obs.category) == COARSE
            else obs
            for obs in observations
        ]

    return stage


def aggregate(policy: ConsentPolicy, aggregator: Aggregator) -> _Stage:
    """Return the stage that, where a category's consent is coarse, keeps only aggregates."""

    def stage(observations: list[Observation]) -> list[Observation]:
        out: list[Observation] = []
        for obs in observations:
            if (
                CATEGORIES[obs.category].desensitise == AGGREGATE
                and policy.decide(obs.device, obs.category) == COARSE
            ):
                out.extend(aggregator.add(obs))
            else:
                out.append(obs)
        return out

    return stage


def coarsen(obs: Observation) -> Observation:
    """Return ``obs`` as ``location.coarse``: numeric coordinates rounded to 0.1 degree."""
    fields = {
        name: round(value, COARSE_DECIMALS) if isinstance(value, float) else value
        for name, value in obs.fields.items()
    }
    return Observation(obs.device, LOCATION_COARSE, obs.ts, fields)


def pseudonymised(obs: Observation, keyed_hash: Callable[[bytes], bytes]) -> Observation:
    """Return ``obs`` with every text or bytes value replaced by its keyed-hash pseudonym."""

    def hide(value: Value) -> Value:
        if isinstance(value, str):
            return keyed_hash(b"field:" + value.encode()).hex()
        if isinstance(value, bytes):
            return keyed_hash(b"field:" + value).hex()
        return value

    fields = {name: hide(value) for name, value in obs.fields.items()}
    return Observation(obs.device, obs.category, obs.ts, fields)
