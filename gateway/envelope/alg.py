"""Choice of the record AEAD (docs/envelope.md).

``alg = "auto"`` means 1 (AES-128-GCM) when the CPU has AES instructions and 24
(ChaCha20/Poly1305) otherwise: a Raspberry Pi 4 and older lack the ARMv8 crypto extension, and
software AES there is several times slower than ChaCha20. The Linux kernel lists the
instructions in ``/proc/cpuinfo``: an ``aes`` word on the ``flags`` lines (x86) or the
``Features`` lines (ARM). When no such line can be read the CPU is assumed to be of the common
kind that has them. Consumers accept both algorithms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from gateway.envelope.keyschedule import ALG_A128GCM, ALG_CHACHA20_POLY1305

CPUINFO: Final = Path("/proc/cpuinfo")


def cpu_has_aes(cpuinfo: str) -> bool | None:
    """Return whether ``cpuinfo`` text lists AES instructions; None if it has no flag lines."""
    seen = False
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in ("flags", "features"):
            seen = True
            if "aes" in value.split():
                return True
    return False if seen else None


def choose_alg(setting: str, cpuinfo: Path = CPUINFO) -> int:
    """Return the COSE alg for the configured ``setting`` ("auto", "1" or "24")."""
    if setting != "auto":
        if setting not in ("1", "24"):
            raise ValueError(f'alg {setting!r} is not "auto", "1" or "24"')
        return int(setting)
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ALG_A128GCM
    return ALG_CHACHA20_POLY1305 if cpu_has_aes(text) is False else ALG_A128GCM
