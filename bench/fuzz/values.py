"""Random and mutated JSON values shared by the fuzz targets."""

from __future__ import annotations

import random
from typing import Any, Final

WEIRD_NUMBERS: Final = (
    0,
    -1,
    1,
    2**31,
    -(2**63),
    2**64,
    10**30,
    10**400,
    1e308,
    -1e-308,
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.5,
    3600.0,
    1e400,
)


def random_text(rng: random.Random) -> str:
    """Return a short string mixing ASCII, control characters and other planes."""
    pools = (
        "abcdefghijklmnopqrstuvwxyz0123456789-_.:",
        "\x00\x07\n\t\x1b\x7f\u200b",
        "äöüéÅ漢字😀\ud7ff\ufffd",
        "ABCDEF0123456789",
    )
    pool = rng.choice(pools)
    return "".join(rng.choice(pool) for _ in range(rng.choice((0, 1, 3, 8, 16, 70, 300))))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """Return a random JSON-compatible value (NaN and huge integers included)."""
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(WEIRD_NUMBERS)
    if kind == 1:
        return random_text(rng)
    if kind == 2:
        return rng.choice((None, True, False))
    if kind == 3:
        return rng.randint(-1000, 100_000)
    if kind == 4:
        return rng.uniform(-1e6, 1e6)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 6:
        return {random_text(rng): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return {
        rng.choice(
            (
                "id",
                "gen",
                "ver",
                "mac",
                "tC",
                "apower",
                "sys",
                "switch:0",
                "version",
                "available_updates",
                "stable",
            )
        ): random_json(rng, depth + 1)
        for _ in range(rng.randint(1, 3))
    }


def mutate_tree(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """Return ``value`` (a JSON tree) with one subtree replaced, deleted, or added to."""
    if isinstance(value, dict) and value and depth < 6:
        out = dict(value)
        key = rng.choice(list(out))
        action = rng.randrange(4)
        if action == 0:
            del out[key]
        elif action == 1:
            out[key] = random_json(rng)
        elif action == 2:
            out[rng.choice((key, random_text(rng)))] = random_json(rng)
        else:
            out[key] = mutate_tree(rng, out[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 6:
        out_list = list(value)
        index = rng.randrange(len(out_list))
        out_list[index] = mutate_tree(rng, out_list[index], depth + 1)
        return out_list
    return random_json(rng)
