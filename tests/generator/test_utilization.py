"""Busy and hand-over time of a gang, from rank 0's timings of each finished job."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.generator.utilization import GangUtilization, queued_at


def result(start: float, end: float) -> dict[str, float]:
    return {"gang_started_at": start, "gang_ended_at": end}


def sample(name: str, task: str) -> float:
    return REGISTRY.get_sample_value(name, {"task": task}) or 0.0


def test_a_queued_job_counts_its_hand_over_and_every_job_its_busy_time():
    gang, task = GangUtilization(), "util-a"
    assert gang.record(task, "1000-0", result(1001.0, 1003.0)) is None  # the first job: nothing before it
    assert gang.record(task, "1002500-0", result(1003.02, 1005.0)) == 1003.02 - 1003.0  # queued at 1002.5
    assert gang.record(task, "1010000-0", result(1010.1, 1011.0)) is None  # arrived after the gang was free
    assert abs(sample("wan22_gang_busy_seconds_total", task) - (2.0 + 1.98 + 0.9)) < 1e-9
    assert sample("wan22_gang_handover_seconds_count", task) == 1


def test_an_interrupted_job_breaks_the_chain():
    gang, task = GangUtilization(), "util-b"
    gang.record(task, "1000-0", result(1001.0, 1003.0))
    gang.interrupted()  # e.g. the next job was cancelled mid-run
    assert gang.record(task, "1002000-0", result(1009.0, 1010.0)) is None
    assert gang.record(task, "1000-1", {}) is None  # no timings (an older rank): not counted


def test_queued_at_reads_the_entry_id():
    assert queued_at("1796164633319-7") == 1796164633.319
