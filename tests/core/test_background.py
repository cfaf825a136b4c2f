"""The background-job base: the work runs on its own named thread, its error is kept
rather than raised, and the after-hook runs once done is set, on success and on error."""

from __future__ import annotations

import threading

from core.background import BackgroundJob


class _Job(BackgroundJob):
    thread_name = "test-job"
    daemon = False

    def __init__(self, fail: bool) -> None:
        self.fail, self.ran_on, self.after_saw_done = fail, None, None
        super().__init__()

    def _work(self) -> None:
        self.ran_on = threading.current_thread().name
        if self.fail:
            raise ValueError("broken")

    def _after(self) -> None:
        self.after_saw_done = self.done.is_set()


def test_work_runs_on_its_thread_and_the_hook_after_it() -> None:
    job = _Job(fail=False)
    assert job.start() is job and job.wait(30)
    assert job.ran_on == "test-job" and job.error is None and job.after_saw_done is True
    assert job._thread.daemon is False


def test_an_error_is_kept_and_done_is_still_set() -> None:
    job = _Job(fail=True).start()
    assert job.wait(30)
    assert isinstance(job.error, ValueError) and str(job.error) == "broken"
    assert job.after_saw_done is True


def test_a_progress_job_shows_its_progress_and_keeps_its_result() -> None:
    from core.background import ProgressJob

    step, done_calls = threading.Event(), []

    def work(progress) -> list[int]:
        progress(0.5, "half way")
        step.wait(30)
        return [1, 2]

    job = ProgressJob(work, on_done=lambda: done_calls.append(job.done.is_set())).start()
    for _ in range(300):
        if job.fraction == 0.5:
            break
        threading.Event().wait(0.01)
    assert job.status() == {"fraction": 0.5, "message": "half way", "done": False, "error": None}
    assert job.result is None
    step.set()
    assert job.wait(30) and job.result == [1, 2] and job.error is None
    for _ in range(300):  # the hook runs just after done is set
        if done_calls:
            break
        threading.Event().wait(0.01)
    assert done_calls == [True]


def test_a_failed_progress_job_keeps_its_error_and_no_result() -> None:
    from core.background import ProgressJob

    def work(progress) -> int:
        raise ValueError("no text")

    job = ProgressJob(work).start()
    assert job.wait(30) and job.result is None and isinstance(job.error, ValueError)
    assert job.status()["error"] == "no text" and job.status()["done"] is True
