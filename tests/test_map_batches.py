"""parajob.map_batches: a plain Python callable run as a parallel job, called the way a user
calls it (in this process: workers are forked from the test, so lambdas and closures work).

One small helper per failure mode (raise, os._exit, SIGKILL, hang, unpicklable result,
short return), each asserting one outcome; markers on disk make a fault happen once.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_files

import parajob
from parajob.results import Failure

README = Path(__file__).resolve().parents[1] / "README.md"
DEADLINE_S = 60.0


def children() -> set[int]:
    """Processes whose parent is this test process (workers, the janitor, ...)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.add(int(entry))
    return found


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def once(marker: Path) -> bool:
    """True the first time it is called for marker (in any process)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


# -- results ----------------------------------------------------------------------------


def test_a_lambda_over_ten_thousand_items_in_odd_mini_batches_equals_the_serial_list() -> None:
    result = parajob.map_batches(
        lambda batch: [x * x for x in batch], range(10_000), mini_batch_size=7, workers=2
    )
    assert result.results == [x * x for x in range(10_000)]
    assert result.run.succeeded
    step = result.run.steps[0]
    assert (step.total_batches, step.items_out) == (-(-10_000 // 7), 10_000)


def test_one_worker_gives_the_same_results() -> None:
    result = parajob.map_batches(
        lambda batch: [str(x) for x in batch], list(range(50)), mini_batch_size=4, workers=1
    )
    assert result.results == [str(x) for x in range(50)]


def test_a_closure_and_a_bound_method_see_the_callers_local_state() -> None:
    table = {i: f"value-{i}" for i in range(30)}  # local: never pickled, inherited by fork

    class Scorer:
        def __init__(self, offset: int) -> None:
            self.offset = offset

        def score(self, batch: list[int]) -> list[int]:
            return [x + self.offset for x in batch]

    assert parajob.map_batches(
        lambda b: [table[i] for i in b], range(30), mini_batch_size=4, workers=2
    ).results == [table[i] for i in range(30)]
    assert parajob.map_batches(
        Scorer(1000).score, range(30), mini_batch_size=4, workers=2
    ).results == [x + 1000 for x in range(30)]


def test_a_folder_of_files_reaches_fn_as_absolute_paths_in_sorted_order(tmp_path: Path) -> None:
    files = make_files(tmp_path / "data", 23, nested=True)

    def read(batch: list[str]) -> list[str]:
        assert all(os.path.isabs(p) for p in batch)
        return [Path(p).read_text(encoding="utf-8").strip() for p in batch]

    result = parajob.map_batches(read, tmp_path / "data", mini_batch_size=5, workers=2)
    assert result.results == [p.read_text(encoding="utf-8").strip() for p in files]


def test_init_and_shutdown_run_once_per_worker_and_fn_sees_what_init_made(tmp_path: Path) -> None:
    state: dict[str, int] = {}

    def init() -> None:
        state["pid"] = os.getpid()
        (tmp_path / f"init-{os.getpid()}").touch()

    def shutdown() -> None:
        (tmp_path / f"shutdown-{os.getpid()}").touch()

    result = parajob.map_batches(
        lambda b: [state["pid"]] * len(b),
        range(40),
        mini_batch_size=3,
        workers=2,
        init=init,
        shutdown=shutdown,
    )
    pids = set(result.results)  # a worker may have run no mini-batch: a subset
    started = {int(p.name.removeprefix("init-")) for p in tmp_path.glob("init-*")}
    ended = {int(p.name.removeprefix("shutdown-")) for p in tmp_path.glob("shutdown-*")}
    assert os.getpid() not in started and pids <= started == ended and len(started) <= 2


def test_a_run_dir_keeps_the_logs_and_a_results_file_of_pickles(tmp_path: Path) -> None:
    result = parajob.map_batches(
        lambda b: [x + 1 for x in b],
        range(10),
        mini_batch_size=3,
        workers=2,
        run_dir=tmp_path / "run",
    )
    assert result.run.run_dir == tmp_path / "run"
    chunks = []
    with open(tmp_path / "run" / "map" / "outputs" / "results.pkl", "rb") as f:
        while True:
            try:
                chunks.append(pickle.load(f))
            except EOFError:
                break
    assert chunks == [(0, [1, 2, 3]), (1, [4, 5, 6]), (2, [7, 8, 9]), (3, [10])]
    assert (tmp_path / "run" / "map" / "logs" / "job_result.txt").is_file()
    with pytest.raises(parajob.MapArgumentError, match="run_dir.*already holds"):
        parajob.map_batches(lambda b: b, range(3), run_dir=tmp_path / "run")


def test_the_temporary_run_folder_is_removed_after_a_success() -> None:
    result = parajob.map_batches(lambda b: b, range(5), workers=1)
    assert not result.run.run_dir.exists()


def test_no_items_is_an_empty_result() -> None:
    result = parajob.map_batches(lambda b: b, [], workers=1)
    assert result.results == [] and result.run.succeeded


def test_it_runs_from_a_thread_other_than_the_main_one() -> None:
    got: list[object] = []
    thread = threading.Thread(
        target=lambda: got.append(
            parajob.map_batches(lambda b: [-x for x in b], range(20), mini_batch_size=3, workers=2)
        )
    )
    thread.start()
    thread.join(DEADLINE_S)
    assert isinstance(got[0], parajob.MapResult)
    assert got[0].results == [-x for x in range(20)]


# -- failures ---------------------------------------------------------------------------


def fails_on_23(batch: list[int]) -> list[int]:
    if 23 in batch:
        raise ValueError("cannot score item 23")
    return batch


def test_fn_raising_for_one_item_is_retried_then_the_failure_names_the_item() -> None:
    with pytest.raises(parajob.MapFailed) as caught:
        parajob.map_batches(fails_on_23, range(60), mini_batch_size=7, workers=2, max_retries=2)
    message = str(caught.value)
    assert "mini-batch 3 (items 21..27)" in message and "[23] 23" in message
    assert "after 3 attempt(s)" in message and "ValueError: cannot score item 23" in message
    run = caught.value.run
    assert run.status == "failed"
    failure = run.steps[0].failures[0]
    assert (failure.batch, failure.attempts, failure.error_type) == (3, 3, "ValueError")
    assert "fails_on_23" in failure.traceback
    # A failed run keeps its temporary folder, for its logs; the message names them.
    assert f"logs: {run.run_dir}" in message and run.run_dir.is_dir()
    shutil.rmtree(run.run_dir)


def test_with_failures_allowed_their_items_hold_the_failure_and_the_rest_their_results() -> None:
    result = parajob.map_batches(
        fails_on_23,
        range(60),
        mini_batch_size=7,
        workers=2,
        max_retries=0,
        mini_batch_error_threshold=-1,
    )
    assert result.run.succeeded
    assert result.results[:21] == list(range(21)) and result.results[28:] == list(range(28, 60))
    assert all(isinstance(r, Failure) and r.batch == 3 for r in result.results[21:28])
    assert [f.batch for f in result.failures] == [3]


def test_init_failing_in_every_worker_fails_the_job_naming_init(tmp_path: Path) -> None:
    def init() -> None:
        raise RuntimeError("no model file")

    with pytest.raises(parajob.MapFailed, match=r"init\(\) failed") as caught:
        parajob.map_batches(lambda b: b, range(10), workers=2, init=init, run_dir=tmp_path / "run")
    errors = caught.value.run.steps[0].logs / "user" / "error"  # type: ignore[operator]
    assert "RuntimeError: no model file" in "".join(
        p.read_text(encoding="utf-8") for p in errors.rglob("*.txt")
    )


@pytest.mark.parametrize("how", ["os._exit", "SIGKILL"])
def test_a_worker_that_dies_once_is_replaced_and_every_result_arrives_once(
    tmp_path: Path, how: str
) -> None:
    def dies_once(batch: list[int]) -> list[int]:
        if 50 in batch and once(tmp_path / "died"):
            if how == "os._exit":
                os._exit(1)
            os.kill(os.getpid(), signal.SIGKILL)
        return [x * 3 for x in batch]

    result = parajob.map_batches(dies_once, range(200), mini_batch_size=6, workers=2)
    assert result.results == [x * 3 for x in range(200)]
    assert result.run.steps[0].failed_attempts == 1


def test_a_hang_past_the_timeout_is_killed_and_retried(tmp_path: Path) -> None:
    def hangs_once(batch: list[int]) -> list[int]:
        if 7 in batch and once(tmp_path / "hung"):
            time.sleep(600)
        return batch

    result = parajob.map_batches(hangs_once, range(30), mini_batch_size=4, workers=2, timeout=1)
    assert result.results == list(range(30))
    assert result.run.steps[0].failed_attempts == 1
    csv = result.run.steps[0].logs / "sys" / "job_report" / "processed_mini-batches.csv"
    assert not csv.exists()  # the temporary run folder is gone after the success


def test_a_hang_on_every_try_fails_the_job_with_the_timeout_named(tmp_path: Path) -> None:
    with pytest.raises(
        parajob.MapFailed,
        match=r"timed_out: run\(\) exceeded "
        r"retry_settings.timeout of 1 s",
    ):
        parajob.map_batches(
            lambda b: time.sleep(600) if 3 in b else b,
            range(8),
            mini_batch_size=4,
            workers=2,
            timeout=1,
            max_retries=1,
            run_dir=tmp_path / "run",
        )


def test_an_unpicklable_result_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(parajob.MapFailed) as caught:
        parajob.map_batches(
            lambda b: [threading.Lock() for _ in b],
            range(4),
            workers=1,
            max_retries=0,
            run_dir=tmp_path / "run",
        )
    assert "cannot be pickled to reach the caller" in str(caught.value)
    assert "return picklable values" in str(caught.value)


def test_a_short_return_fails_with_the_counts_named(tmp_path: Path) -> None:
    with pytest.raises(
        parajob.MapFailed, match="fn returned 1 results for a mini-batch of 3 items"
    ):
        parajob.map_batches(
            lambda b: b[:1],
            range(6),
            mini_batch_size=3,
            workers=1,
            max_retries=0,
            run_dir=tmp_path / "run",
        )


# -- stream and cancel ------------------------------------------------------------------


def test_stream_yields_every_result_in_order() -> None:
    stream = parajob.map_batches(
        lambda b: [x * 2 for x in b], range(500), mini_batch_size=9, workers=2, stream=True
    )
    assert isinstance(stream, parajob.MapStream)
    assert list(stream) == [x * 2 for x in range(500)]
    assert stream.run is not None and stream.run.succeeded


def test_stream_yields_before_the_run_ends(tmp_path: Path) -> None:
    release = tmp_path / "release"

    def waits_at_the_end(batch: list[int]) -> list[int]:
        if 99 in batch:
            wait_for(release)
        return batch

    with parajob.map_batches(
        waits_at_the_end, range(100), mini_batch_size=10, workers=2, stream=True
    ) as stream:
        first = [next(stream) for _ in range(10)]  # the last mini-batch has not finished
        assert first == list(range(10)) and stream.run is None
        release.touch()
        assert first + list(stream) == list(range(100))


def test_a_stream_yields_what_precedes_a_failed_mini_batch_then_raises(tmp_path: Path) -> None:
    stream = parajob.map_batches(
        fails_on_23,
        range(60),
        mini_batch_size=7,
        workers=2,
        max_retries=0,
        stream=True,
        run_dir=tmp_path / "run",
    )
    got = []
    with pytest.raises(parajob.MapFailed, match="mini-batch 3 .items 21..27."):
        for value in stream:
            got.append(value)
    assert got == list(range(21))
    assert stream.run is not None and stream.run.status == "failed"


def test_a_stream_with_failures_allowed_yields_failures_in_their_items_places() -> None:
    got = list(
        parajob.map_batches(
            fails_on_23,
            range(60),
            mini_batch_size=7,
            workers=2,
            max_retries=0,
            mini_batch_error_threshold=1,
            stream=True,
        )
    )
    assert got[:21] == list(range(21)) and got[28:] == list(range(28, 60))
    assert all(isinstance(r, Failure) and r.error_type == "ValueError" for r in got[21:28])


def test_closing_a_stream_early_cancels_the_run_and_leaves_no_process(tmp_path: Path) -> None:
    before = children()

    def slow(batch: list[int]) -> list[int]:
        (tmp_path / f"pid-{os.getpid()}").touch()
        time.sleep(0.05)
        return batch

    stream = parajob.map_batches(slow, range(2000), mini_batch_size=2, workers=2, stream=True)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert stream.run is not None and stream.run.status == "cancelled"
    assert children() <= before
    for marker in tmp_path.glob("pid-*"):
        with pytest.raises(ProcessLookupError):
            os.kill(int(marker.name.removeprefix("pid-")), 0)
    assert not stream.run.run_dir.exists()


def test_cancel_from_another_thread_stops_the_run(tmp_path: Path) -> None:
    before = children()
    cancel = threading.Event()
    started = tmp_path / "started"

    def slow(batch: list[int]) -> list[int]:
        started.touch()
        time.sleep(0.05)
        return batch

    def canceller() -> None:
        wait_for(started)
        cancel.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    with pytest.raises(parajob.MapCancelled, match="cancelled") as caught:
        parajob.map_batches(slow, range(5000), mini_batch_size=1, workers=2, cancel=cancel)
    thread.join(DEADLINE_S)
    assert caught.value.run.status == "cancelled"
    assert caught.value.run.steps[0].completed_batches < 5000
    assert children() <= before


# -- run folder and resume --------------------------------------------------------------


def test_a_cancelled_folder_run_resumes_running_only_what_was_not_accepted(tmp_path: Path) -> None:
    files = make_files(tmp_path / "data", 60)
    calls = [tmp_path / "calls1", tmp_path / "calls2"]
    for folder in calls:
        folder.mkdir()
    cancel, started, run_dir = threading.Event(), tmp_path / "started", tmp_path / "run"

    def slow(batch: list[str], into: Path) -> list[str]:
        for path in batch:
            (into / Path(path).name).touch()
        if Path(batch[0]).name == "f00020.txt":
            started.touch()
        time.sleep(0.05)
        return [Path(p).name for p in batch]

    def canceller() -> None:
        wait_for(started)
        cancel.set()

    thread = threading.Thread(target=canceller)
    thread.start()
    with pytest.raises(parajob.MapCancelled) as caught:
        parajob.map_batches(
            lambda b: slow(b, calls[0]),
            tmp_path / "data",
            mini_batch_size=2,
            workers=2,
            run_dir=run_dir,
            cancel=cancel,
        )
    thread.join(DEADLINE_S)
    accepted = caught.value.run.steps[0].completed_batches
    assert 0 < accepted < 30

    result = parajob.map_batches(
        lambda b: slow(b, calls[1]),
        tmp_path / "data",
        mini_batch_size=2,
        workers=2,
        run_dir=run_dir,
        resume=True,
    )
    assert result.results == [p.name for p in files]
    assert len(list(calls[1].iterdir())) == 60 - 2 * accepted


KILLED_RUN = """
import sys, time
from pathlib import Path
import parajob

def slow(batch):
    time.sleep(0.05)
    return [Path(p).name for p in batch]

parajob.map_batches(slow, sys.argv[1], mini_batch_size=2, workers=2, run_dir=sys.argv[2])
"""


def test_a_folder_run_whose_process_was_killed_resumes_in_another(tmp_path: Path) -> None:
    from parajob.runtime.journal import journal_path, read_journal

    files = make_files(tmp_path / "data", 200)
    run_dir, calls = tmp_path / "run", tmp_path / "calls"
    calls.mkdir()
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data"), str(run_dir)], env=env
    )
    journal, deadline = journal_path(run_dir / "map"), time.monotonic() + DEADLINE_S
    while (record := read_journal(journal)) is None or not len(record.accepted):
        assert proc.poll() is None and time.monotonic() < deadline, "nothing was journalled"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    accepted = len(read_journal(journal).accepted)  # type: ignore[union-attr]

    def counted(batch: list[str]) -> list[str]:
        for path in batch:
            (calls / Path(path).name).touch()
        return [Path(p).name for p in batch]

    result = parajob.map_batches(
        counted, tmp_path / "data", mini_batch_size=2, workers=2, run_dir=run_dir, resume=True
    )
    assert result.results == [p.name for p in files]
    assert len(list(calls.iterdir())) == 200 - 2 * accepted


def test_what_fn_prints_goes_to_the_run_logs(tmp_path: Path) -> None:
    def chatty(batch: list[int]) -> list[int]:
        print(f"scoring {batch}")
        return batch

    parajob.map_batches(chatty, range(3), workers=1, run_dir=tmp_path / "run")
    logs = tmp_path / "run" / "map" / "logs" / "user" / "stdout"
    text = "".join(p.read_text(encoding="utf-8") for p in logs.rglob("*.txt"))
    assert all(f"scoring [{i}]" in text for i in range(3))


def test_resume_refuses_an_input_changed_since_the_run_started(tmp_path: Path) -> None:
    files = make_files(tmp_path / "data", 6)
    parajob.map_batches(
        lambda b: b, tmp_path / "data", mini_batch_size=2, workers=1, run_dir=tmp_path / "run"
    )
    files[3].write_text("a longer line than before\n", encoding="utf-8")
    with pytest.raises(
        parajob.MapArgumentError, match="resume: .* cannot be resumed: mini-batch 1 changed"
    ):
        parajob.map_batches(
            lambda b: b,
            tmp_path / "data",
            mini_batch_size=2,
            workers=1,
            run_dir=tmp_path / "run",
            resume=True,
        )


def test_resume_refuses_in_memory_items_and_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(parajob.MapArgumentError, match="resume: a run over in-memory items"):
        parajob.map_batches(lambda b: b, range(3), run_dir=tmp_path / "run", resume=True)
    make_files(tmp_path / "data", 2)
    with pytest.raises(parajob.MapArgumentError, match="resume: .* holds no map_batches run"):
        parajob.map_batches(lambda b: b, tmp_path / "data", run_dir=tmp_path / "run", resume=True)
    assert not (tmp_path / "run").exists()  # nothing left behind by the refusal


def test_a_run_dir_in_use_by_a_running_stream_is_refused(tmp_path: Path) -> None:
    release = tmp_path / "release"

    def waits(batch: list[int]) -> list[int]:
        wait_for(release)
        return batch

    with parajob.map_batches(
        waits, range(4), workers=1, run_dir=tmp_path / "run", stream=True
    ) as stream:
        with pytest.raises(parajob.errors.SpecError, match="in use by pid"):
            parajob.map_batches(lambda b: b, range(4), run_dir=tmp_path / "run")
        release.touch()
        assert list(stream) == [0, 1, 2, 3]


def test_progress_callbacks_arrive_with_the_final_counts() -> None:
    events: list[object] = []
    parajob.map_batches(
        lambda b: b, range(30), mini_batch_size=3, workers=2, on_progress=events.append
    )
    final = [e for e in events if getattr(e, "final", False)]
    assert final and getattr(final[-1], "done_batches", None) == 10


# -- bad arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"mini_batch_size": 0}, "mini_batch_size"),
        ({"workers": 0}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"mini_batch_error_threshold": -2}, "mini_batch_error_threshold"),
        ({"init": 3}, "init"),
    ],
)
def test_a_bad_argument_is_named_before_anything_runs(
    kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises(parajob.MapArgumentError, match=rf"map_batches: error: {parameter}: "):
        parajob.map_batches(lambda b: b, range(3), **kwargs)  # type: ignore[call-overload]


def test_a_missing_folder_and_a_non_callable_are_named(tmp_path: Path) -> None:
    with pytest.raises(parajob.MapArgumentError, match="items_or_folder: no such folder"):
        parajob.map_batches(lambda b: b, tmp_path / "missing")
    with pytest.raises(parajob.MapArgumentError, match="fn: expected a callable"):
        parajob.map_batches("not a function", range(3))  # type: ignore[call-overload]


def test_serial_runs_fn_in_this_process_and_thread_with_the_same_results() -> None:
    seen: set[tuple[int, int]] = set()

    def fn(batch: list[int]) -> list[int]:
        seen.add((os.getpid(), threading.get_ident()))  # a closure: visible here after
        return [x * 3 for x in batch]

    result = parajob.map_batches(fn, range(50), mini_batch_size=4, serial=True)
    assert result.results == [x * 3 for x in range(50)]
    assert seen == {(os.getpid(), threading.get_ident())}
    assert result.run.succeeded


# -- README -----------------------------------------------------------------------------


def test_the_readme_example_runs_as_shown() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### map_batches", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), str(README), "exec"), namespace)  # noqa: S102


def test_a_dataframe_is_refused_with_a_hint_not_mapped_over_its_column_names() -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
    with pytest.raises(parajob.MapArgumentError, match=r"items_or_folder: .*DataFrame") as info:
        parajob.map_batches(lambda batch: batch, frame)
    assert "to_dict('records')" in str(info.value)
    rows = parajob.map_batches(
        lambda batch: [r["a"] + r["b"] for r in batch], frame.to_dict("records"), workers=1
    )
    assert rows.results == [5, 7, 9]
