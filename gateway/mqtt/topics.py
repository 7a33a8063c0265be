"""Topic names of the MQTT API v1 (docs/mqtt-api.md), built and parsed in one place.

Every segment is portable (``[A-Za-z0-9_-]``, see ``gateway.envelope.topics``): categories are
written with ``_`` for ``.`` so RabbitMQ and NATS carry the topics unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.envelope.topics import data_topic


@dataclass(frozen=True, slots=True)
class Topics:
    """All topics of one hub under ``root`` = ``<base_topic>/<hub_id>``."""

    root: str

    @property
    def status(self) -> str:
        """Retained ``online``/``offline`` (also the last will)."""
        return f"{self.root}/status"

    @property
    def health(self) -> str:
        """Retained JSON health report."""
        return f"{self.root}/health"

    @property
    def consent(self) -> str:
        """Retained JSON consent state."""
        return f"{self.root}/consent"

    @property
    def devices(self) -> str:
        """Retained JSON list of paired devices."""
        return f"{self.root}/devices"

    @property
    def epoch(self) -> str:
        """Retained CBOR epoch announcement."""
        return f"{self.root}/epoch"

    @property
    def requests(self) -> str:
        """Subscription filter for every control request."""
        return f"{self.root}/request/#"

    def data(self, device: str, category: str) -> str:
        """Return the topic of a sealed record of ``category`` from ``device`` (pseudonym)."""
        return data_topic(self.root, device, category)

    def request(self, command: str) -> str:
        """Return the request topic of ``command``."""
        return f"{self.root}/request/{command}"

    def response(self, command: str) -> str:
        """Return the default response topic of ``command``."""
        return f"{self.root}/response/{command}"

    def command_of(self, topic: str) -> str | None:
        """Return the command named by request ``topic``, or None if it is not a request."""
        prefix = f"{self.root}/request/"
        if not topic.startswith(prefix):
            return None
        command = topic[len(prefix) :]
        return command or None
