"""Short fuzz run (20k inputs): no input crashes a parser; every bad command gets an error.

The same generators as ``python -m bench.fuzz_inputs`` (which runs >= 1M inputs) with the CI
budget. A failure lists each crash kind with an input that causes it.
"""

from __future__ import annotations

import json

import pytest

from bench.fuzz_inputs import QUICK, TARGETS, run_target


@pytest.mark.parametrize("target", TARGETS)
def test_no_input_crashes(target: str) -> None:
    findings = run_target(target, QUICK[target], seed=7)
    assert findings.inputs == QUICK[target]
    assert findings.crash_count == 0, json.dumps(findings.crashes, indent=1)
    assert sum(findings.outcomes.values()) > 0


def test_every_registered_command_is_exercised() -> None:
    findings = run_target("commands", QUICK["commands"], seed=11)
    assert len(findings.covered) >= 12
    answered = {key.split(":")[0] for key in findings.outcomes}
    assert set(findings.covered) <= answered
    assert findings.outcomes["?:unknown_command"] > 0
    assert not any(key.endswith(":internal") for key in findings.outcomes)
