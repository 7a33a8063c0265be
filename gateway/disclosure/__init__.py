"""What the hub collects and forwards right now, in words generated from its live state."""
