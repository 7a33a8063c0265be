"""Health counters for Prometheus, written to a node_exporter textfile (no socket)."""
