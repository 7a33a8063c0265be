"""The HTTP boundary of the mDNS transport: GET a JSON document from a device.

Every failure becomes a DeviceError with a stable reason and a message free of anything the
device sent (no payload, header value or address reaches a log line).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Final

from gateway.errors import DeviceError

if TYPE_CHECKING:
    import aiohttp

MAX_BODY_BYTES: Final = 256 * 1024
JSON_TYPE: Final = "application/json"


async def get_json(
    session: aiohttp.ClientSession,
    address: str,
    path: str,
    timeout_s: float,
    max_bytes: int = MAX_BODY_BYTES,
) -> Any:
    """GET ``http://<address><path>`` and return the decoded JSON body.

    Raise DeviceError with reason ``timeout``, ``unreachable``, ``http_status``,
    ``content_type`` or ``bad_json``; the whole exchange is bounded by ``timeout_s``.
    """
    import aiohttp  # noqa: PLC0415 - ~10 MB, loaded with the first device (see open_session)

    url = f"http://{address}{path}"
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise DeviceError(
                        "http_status",
                        f"HTTP status {response.status}"
                        + (
                            " (the device requires authentication, which is not "
                            "supported; disable it on the device)"
                            if response.status == 401
                            else ""
                        ),
                    )
                if response.content_type != JSON_TYPE:
                    raise DeviceError("content_type", f"the answer is not {JSON_TYPE}")
                body = await response.content.read(max_bytes + 1)
    except TimeoutError as exc:
        raise DeviceError("timeout", f"no answer within {timeout_s:g} s") from exc
    except aiohttp.ClientResponseError as exc:
        raise DeviceError("http_status", "the answer is not valid HTTP") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DeviceError("unreachable", f"cannot reach the device ({type(exc).__name__})") from exc
    if len(body) > max_bytes:
        raise DeviceError("bad_json", f"the answer exceeds {max_bytes} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DeviceError("bad_json", "the answer is not valid JSON") from exc


def open_session() -> aiohttp.ClientSession:
    """Return a new HTTP client session for device requests (timeouts are per request).

    aiohttp is imported here, with the first device that needs it, not at start-up: a hub
    without Wi-Fi devices never pays its ~10 MB.
    """
    import aiohttp  # noqa: PLC0415

    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
