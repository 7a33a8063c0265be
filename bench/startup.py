"""P5: start-up time to READY=1 and peak memory of the daemon with 500 simulated devices.

``python -m bench.startup [--devices N] [--rate-hz R] [--seconds S] [--starts K]`` runs the
daemon as systemd would (``python -m gateway run --config FILE`` with ``NOTIFY_SOCKET`` set to
an AF_UNIX datagram socket this benchmark binds) against a default-config Mosquitto on
loopback. Each of K starts is timed from just before the process is spawned to the
``READY=1`` datagram (goal <= 1.5 s); the first start is a first boot (keys and database
created), the others restarts. The last start then runs N simulated devices at R readings/s
each for S seconds, with every consent flag the simulator's data needs switched on (so every
reading is sealed and published), while a subscriber counts the records that arrive; the
child's peak RSS is its ``VmHWM`` (goal <= 60 MB). mDNS is enabled on 127.0.0.1 so the
transport's modules are loaded as in a real hub; BLE is off (no radio here).
Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import default_broker, write_results
from bench.fault_proc import DaemonProcess, DaemonSpec

HUB_ID = "bench-startup"
MDNS = True
GRANTS = (("health", "on"), ("location", "on"))


class Counter:
    """A paho client counting the hub's data messages and sending it control requests."""

    def __init__(self, port: int, root: str) -> None:
        self.count = 0
        self.bytes = 0
        self._root = root
        self._online = threading.Event()
        self._responses: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-startup-count")
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(
            [(f"{root}/data/#", 0), (f"{root}/status", 1), (f"{root}/response/#", 1)]
        )
        self._client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, message: Any) -> None:
        topic: str = message.topic
        if "/data/" in topic:
            self.count += 1  # only this thread writes it
            self.bytes += len(message.payload)
        elif topic.endswith("/status"):
            if message.payload == b"online":
                self._online.set()
        else:
            body = json.loads(message.payload)
            with self._answered:
                self._responses[str(body.get("transaction"))] = body
                self._answered.notify_all()

    def request(self, command: str, params: dict[str, Any], timeout: float = 10.0) -> None:
        """Send one control request once the hub is online; raise unless it answers ok."""
        if not self._online.wait(timeout):
            raise TimeoutError("the hub did not come online")
        transaction = f"{command}-{len(self._responses)}-{time.monotonic_ns()}"
        body = {"transaction": transaction, **params}
        self._client.publish(f"{self._root}/request/{command}", json.dumps(body), qos=1)
        with self._answered:
            if not self._answered.wait_for(lambda: transaction in self._responses, timeout):
                raise TimeoutError(f"no answer to {command}")
        answer = self._responses[transaction]
        if answer.get("status") != "ok":
            raise RuntimeError(f"{command} refused: {answer}")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


def measure(devices: int, rate_hz: float, seconds: float, starts: int) -> dict[str, Any]:
    """Return READY times of ``starts`` starts and the memory of a loaded run of the last."""
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        workdir = Path(tmp)
        broker = default_broker(workdir / "broker")
        spec = DaemonSpec(
            HUB_ID,
            workdir / "hub",
            broker.port,
            devices=devices,
            rate_hz=rate_hz,
            mdns_loopback=MDNS,
        )
        spec.workdir.mkdir()
        ready_s: list[float] = []
        try:
            for n in range(starts):
                daemon = DaemonProcess(spec)
                daemon.start()
                try:
                    ready_s.append(daemon.wait_ready())
                    if n == starts - 1:
                        loaded = _loaded_run(daemon, broker.port, seconds)
                finally:
                    code = daemon.stop()
                if code != 0:
                    raise RuntimeError(f"daemon exited with {code}; see {daemon.log_path}")
        finally:
            broker.stop()
    restarts = ready_s[1:] or ready_s
    return {
        "devices": devices,
        "rate_hz": rate_hz,
        "seconds": seconds,
        "starts": starts,
        "ready_s": statistics.median(ready_s),
        "ready_first_boot_s": ready_s[0],
        "ready_restart_median_s": statistics.median(restarts),
        "ready_max_s": max(ready_s),
        "ready_rounds": ready_s,
        **loaded,
    }


def _loaded_run(daemon: DaemonProcess, port: int, seconds: float) -> dict[str, Any]:
    root = f"consentgate/{HUB_ID}"
    counter = Counter(port, root)
    try:
        for flag, state in GRANTS:
            counter.request("consent/set", {"flag": flag, "state": state})
        time.sleep(1.0)  # the grants apply; from here every reading is forwarded
        start_count, start = counter.count, time.perf_counter()
        rss_samples = []
        while time.perf_counter() - start < seconds:
            time.sleep(0.5)
            rss_samples.append(daemon.status_kib("VmRSS"))
        delivered = counter.count - start_count
        elapsed = time.perf_counter() - start
        hwm = daemon.status_kib("VmHWM")
        pss = daemon.pss_kib()
    finally:
        counter.close()
    return {
        "peak_rss_mib": hwm / 1024,
        "peak_rss_mb": hwm * 1024 / 1e6,
        "rss_end_mib": rss_samples[-1] / 1024,
        "pss_end_mib": pss / 1024,
        "delivered_per_s": delivered / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    """Run P5 alone and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(args.devices, args.rate_hz, args.seconds, args.starts)
    print(
        f"P5 daemon with {args.devices} devices x {args.rate_hz:g} readings/s, "
        f"{args.seconds:g} s loaded, {args.starts} starts"
    )
    print(f"{'start -> READY=1, median (s)':40} {result['ready_s']:10.2f}")
    print(f"{'  first boot (s)':40} {result['ready_first_boot_s']:10.2f}")
    print(f"{'peak RSS VmHWM (MB)':40} {result['peak_rss_mb']:10.1f}")
    print(f"{'records delivered (/s)':40} {result['delivered_per_s']:10,.0f}")
    print(f"written {write_results('startup', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
