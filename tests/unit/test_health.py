"""`bulktag status` verdicts: slow is told from stuck by facts, not by guesswork."""

from __future__ import annotations

from producer.health import Health, diagnose, health_lines
from tasks.chunks import InFlight
from tasks.records import JobStatus

NOW = 10_000.0


def status(state: str = "running", last_progress_ago: float | None = 5.0) -> JobStatus:
    return JobStatus(
        job="j",
        state=state,  # type: ignore[arg-type]
        total=100,
        ok=40,
        error=0,
        deduped=0,
        created_at=NOW - 600,
        first_result_at=NOW - 500,
        last_progress_at=None if last_progress_ago is None else NOW - last_progress_ago,
        finished_at=None,
        chunk_size=10,
    )


def chunk(name: str, pid: int, started_ago: float, host: str = "bulktag@a") -> InFlight:
    return InFlight(name, host, pid, NOW - started_ago, 10)


def judge(st: JobStatus, flying: list[InFlight], **kw: object) -> Health:
    facts: dict = {"running": {}, "queued": 0, "reserved": 0, "visibility_timeout": 60}
    facts.update(kw)
    return diagnose(st, flying, stall_after=30, now=NOW, **facts)


def test_recent_results_mean_progressing() -> None:
    h = judge(status(last_progress_ago=3), [chunk("0-9", 7, 2)], running={"bulktag@a": {7}})
    assert h.verdict == "progressing" and "last result 3s ago" in h.detail


def test_quiet_job_with_chunks_running_on_live_processes_is_slow() -> None:
    h = judge(status(last_progress_ago=300), [chunk("0-9", 7, 290)], running={"bulktag@a": {7}})
    assert h.verdict == "slow"
    assert "running on live workers" in h.detail and h.orphaned == []


def test_quiet_job_whose_chunk_process_is_gone_is_stuck() -> None:
    # pid 7 died; the worker node answers with another pid busy (or nothing)
    flying = [chunk("0-9", 7, 290)]
    h = judge(status(last_progress_ago=300), flying, running={"bulktag@a": {8}})
    assert h.verdict == "stuck"
    assert "0-9 on bulktag@a pid 7" in h.detail and h.orphaned == flying
    # with no live worker at all, the operator is told to start one
    h = judge(status(last_progress_ago=300), flying, running={})
    assert h.verdict == "stuck" and "start `bulktag worker`" in h.detail


def test_progress_with_an_orphan_is_still_progress_but_says_so() -> None:
    h = judge(status(last_progress_ago=2), [chunk("0-9", 7, 40)], running={"bulktag@b": {9}})
    assert h.verdict == "progressing" and "no longer running them" in h.detail


def test_nothing_in_flight_tells_queued_from_no_worker_from_lost() -> None:
    quiet = status(last_progress_ago=300)
    assert judge(quiet, [], queued=5, running={"bulktag@a": {3}}).verdict == "queued"
    no_worker = judge(quiet, [], queued=5)
    assert no_worker.verdict == "stuck" and "no worker answers" in no_worker.detail
    reserved = judge(quiet, [], reserved=2)
    assert reserved.verdict == "stuck" and "reserved" in reserved.detail
    lost = judge(quiet, [])
    assert lost.verdict == "stuck" and "bulktag retry j --pending" in lost.detail


def test_finished_and_submitting_jobs() -> None:
    assert judge(status("done"), []).verdict == "done"
    assert judge(status("cancelled"), [chunk("0-9", 7, 900)]).verdict == "cancelled"
    assert judge(status("enumerating", None), []).verdict == "submitting"


def test_status_lines_name_the_facts() -> None:
    h = judge(status(last_progress_ago=300), [chunk("0-9", 7, 290)], queued=3, reserved=1)
    text = "\n".join(health_lines(h))
    assert text.startswith("health    stuck: ")
    assert "1 chunk(s) of this job, 1 on processes no longer running them" in text
    assert "3 waiting, 1 reserved" in text and "none answered" in text
    assert h.to_dict()["orphaned"][0]["pid"] == 7
