"""``bench.wear`` reads the fsync calls out of ``strace -c`` summaries as strace 6 prints them."""

from __future__ import annotations

from bench.wear import fsync_calls

NO_ERRORS = """\
strace: Process 8526 attached with 5 threads
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
100.00    0.004339         216        20           fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.004339         216        20           total
"""

WITH_ERRORS = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
  0.00    0.000000           0         2         1 fsync
  0.00    0.000000           0         3           fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.000000           0         5         1 total
"""


def test_the_calls_column_is_read_not_the_time_per_call() -> None:
    assert fsync_calls(NO_ERRORS) == 20


def test_fsync_and_fdatasync_add_up_and_failed_calls_count_as_calls() -> None:
    assert fsync_calls(WITH_ERRORS) == 5


def test_a_window_without_fsyncs_counts_none() -> None:
    assert fsync_calls("strace: Process 1 attached\nstrace: Process 1 detached\n") == 0
