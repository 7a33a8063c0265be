"""``python -m bench --quick`` runs every benchmark and reports every measure (speed unchecked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import Row, run_parts

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_writes_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["ok"]
    assert result["quick"]
    assert {"cpu", "cpus", "python", "mosquitto", "date"} <= result["machine"].keys()
    p1, p2, p3, p4, p5 = (result[p] for p in ("P1", "P2", "P3", "P4", "P5"))
    assert p1["raw_paho_msg_s"] > 0
    assert p1["pipeline_readings_s"] > 0
    assert p1["ratio"] > 0
    assert p2["ack_p50_ms"] > 0
    assert p2["ack_p99_ms"] >= p2["ack_p50_ms"]
    assert p2["withdrawn_seen_after_ack"] == 0
    assert p2["health_in_flight_min"] > 0  # the leak check met records in flight
    assert p3["drain_rate"] > 0
    assert p3["ratio_to_p1"] > 0
    assert p3["acked"] >= p3["records"]
    scenarios = {row["scenario"]: row for row in p4["rows"]}
    assert scenarios["90% duplicates"]["adverts_per_s"] > 0
    assert scenarios["all new"]["adverts_per_s"] > 0
    assert all(row["decode_errors"] == 0 for row in p4["rows"])
    assert 0 < p5["ready_s"] < 30
    assert p5["peak_rss_mb"] > 0
    assert p5["delivered_per_s"] > 0
    measures = [row[0] for row in result["table"]]
    assert len(measures) >= 14
    assert "P5 peak RSS" in done.stdout  # the table was printed


def test_a_failed_part_is_reported_by_the_error_inside_its_task_group() -> None:
    def fails_in_group() -> tuple[dict[str, Any], list[Row]]:
        raise ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("refused")])

    def fails() -> tuple[dict[str, Any], list[Row]]:
        raise RuntimeError("stalled")

    def works() -> tuple[dict[str, Any], list[Row]]:
        return {"figure": 1}, [("PC figure", "1", "", "ok")]

    lines: list[str] = []
    parts = [("PA", fails_in_group), ("PB", fails), ("PC", works)]
    results, table, ok = run_parts(parts, lines.append, {})
    assert not ok
    assert table == [
        ("PA failed", "ValueError: refused", "", "FAILED"),
        ("PB failed", "RuntimeError: stalled", "", "FAILED"),
        ("PC figure", "1", "", "ok"),  # one part failing hides no other
    ]
    assert "ValueError: refused" in results["PA"]["error"]
    assert any("ValueError: refused" in line for line in lines)  # the trace is printed
