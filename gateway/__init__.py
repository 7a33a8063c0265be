"""consentgate: an IoT hub gateway that forwards only what its users consented to."""

__version__ = "0.1.0"
