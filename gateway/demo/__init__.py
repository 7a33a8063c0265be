"""``consentgate demo``: a private broker, simulated devices, the hub and the consumer in one go."""
