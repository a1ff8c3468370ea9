"""parajob.run inside a host process: many calls, other threads, cancel, progress callbacks.

A library call must leave the host as it found it: no process, thread, descriptor, memfd
or shared-memory mapping more than before, the host's gc.freeze() state kept, its signal
handlers untouched. Each test counts what it can see of the process (/proc/self) before
and after, once one warm-up run has loaded what a first run loads for good (numpy,
pyarrow and their thread pools).
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import signal
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import make_files, write_job

import parajob

ECHO = """
import os

def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
"""

FAILING = """
def run(mini_batch):
    raise ValueError("no good")
"""


def _tasks() -> int:
    """Kernel threads, less jemalloc's background threads: pyarrow's allocator (jemalloc in
    pyarrow 14, the floor) starts one per arena for good, and a thread of its own may get a
    new arena; they are pyarrow's, not a run's."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
        except OSError:  # ended meanwhile
            pass
    return sum(name != "jemalloc_bg_thd" for name in names)


@dataclass(frozen=True)
class Footprint:
    """What a run could leave behind in this process."""

    children: int
    threads: int  # Python threads
    tasks: int  # kernel threads (/proc/self/task): also C++ and library pools
    fds: collections.Counter[str]  # open descriptors, by what they point at
    memfds: int
    shared_maps: collections.Counter[str]  # mappings of memfds, /dev/shm, shared anonymous
    dev_shm: frozenset[str]

    @classmethod
    def now(cls) -> Footprint:
        fds: collections.Counter[str] = collections.Counter()
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[os.readlink(f"/proc/self/fd/{fd}")] += 1
            except OSError:  # the listing's own descriptor, closed meanwhile
                pass
        maps: collections.Counter[str] = collections.Counter()
        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                fields = line.split(None, 5)
                name = fields[5].strip() if len(fields) > 5 else ""
                if (
                    "memfd:" in name
                    or "/dev/shm/" in name
                    or "/dev/zero" in name
                    or "SYSV" in name
                    or (fields[1][3] == "s" and not name.endswith(".so"))
                ):
                    maps[name] += 1
        return cls(
            len(psutil.Process().children(recursive=True)),
            len(threading.enumerate()),
            _tasks(),
            fds,
            sum(n for link, n in fds.items() if link.startswith("/memfd:")),
            maps,
            frozenset(os.listdir("/dev/shm")),
        )

    def differences(self, later: Footprint) -> list[str]:
        out = []
        for name in ("children", "threads", "tasks", "memfds"):
            if getattr(self, name) != getattr(later, name):
                out.append(f"{name}: {getattr(self, name)} -> {getattr(later, name)}")
        if self.children != later.children:
            out.append(f"children now: {children()}")
        for name in ("fds", "shared_maps"):
            before, after = getattr(self, name), getattr(later, name)
            if before != after:
                out.append(f"{name}: +{dict(after - before)} -{dict(before - after)}")
        if self.dev_shm != later.dev_shm:
            out.append(
                f"/dev/shm: +{sorted(later.dev_shm - self.dev_shm)} "
                f"-{sorted(self.dev_shm - later.dev_shm)}"
            )
        return out


def children() -> list[str]:
    """This process's descendants, each with its /proc stat line (a zombie keeps its name,
    parent, group and session there: what it was)."""
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            with open(f"/proc/{child.pid}/stat", encoding="utf-8") as f:
                out.append(f.read().strip())
        except OSError:
            continue
    return out


def table_job(tmp: Path, partitioned: bool) -> Path:
    """A CSV table in 1kb mini-batches, or one mini-batch per value of a data column (the
    plan that sorts the table into a memfd)."""
    data = tmp / "data"
    data.mkdir(parents=True)
    (data / "MLTable").write_text(
        textwrap.dedent("""\
        type: mltable
        paths:
          - file: ./t.csv
        transformations:
          - read_delimited: {delimiter: ',', encoding: ascii, header: all_files_same_headers}
        """),
        encoding="utf-8",
    )
    (data / "t.csv").write_text(
        "k,v\n" + "".join(f"{i % 5},{i}\n" for i in range(300)), encoding="utf-8"
    )
    (tmp / "src").mkdir()
    (tmp / "src" / "entry.py").write_text(
        "def run(mini_batch, context):\n    return [str(v) for v in mini_batch['v']]\n",
        encoding="utf-8",
    )
    cut = "partition_keys: [k]" if partitioned else 'mini_batch_size: "1kb"'
    path = tmp / "pipeline.yml"
    path.write_text(
        textwrap.dedent(f"""\
        type: pipeline
        jobs:
          step:
            type: parallel
            inputs:
              data: {{type: mltable, path: ./data, mode: direct}}
            outputs:
              out: {{type: uri_file}}
            input_data: ${{{{inputs.data}}}}
            {cut}
            max_concurrency_per_instance: 2
            task:
              type: run_function
              code: ./src
              entry_script: entry.py
              append_row_to: ${{{{outputs.out}}}}
        """),
        encoding="utf-8",
    )
    return path


def command_job(tmp: Path) -> Path:
    make_files(tmp / "data", 3)
    path = tmp / "pipeline.yml"
    path.write_text(
        textwrap.dedent("""\
        type: pipeline
        jobs:
          copy:
            type: command
            inputs:
              raw: {type: uri_folder, path: ./data}
            outputs:
              copied: {type: uri_folder}
            command: cp -r ${{inputs.raw}}/. ${{outputs.copied}}
        """),
        encoding="utf-8",
    )
    return path


KINDS = {
    "files": lambda tmp: write_job(tmp, ECHO, files=12, mini_batch_size=3),
    "table": lambda tmp: table_job(tmp, partitioned=False),
    "partitioned": lambda tmp: table_job(tmp, partitioned=True),
    "failing": lambda tmp: write_job(tmp, FAILING, files=4, mini_batch_size=2, max_retries=0),
    "command": command_job,
}
EXPECTED = {
    "files": "succeeded",
    "table": "succeeded",
    "partitioned": "succeeded",
    "failing": "failed",
    "command": "succeeded",
}


def run_kind(root: Path, kind: str, n: int) -> parajob.RunResult:
    folder = root / f"{kind}-{n}"
    folder.mkdir()
    pipeline = KINDS[kind](folder)
    return parajob.run(pipeline, run_dir=folder / "run")


def test_twenty_runs_in_one_process_leave_nothing_behind(tmp_path: Path) -> None:
    for kind in KINDS:  # warm-up: imports and library pools a first run starts for good
        run_kind(tmp_path, kind, 0)
    gc.collect()
    before = Footprint.now()
    kinds = list(KINDS) * 4
    for n, kind in enumerate(kinds, start=1):
        result = run_kind(tmp_path, kind, n)
        assert result.status == EXPECTED[kind], (kind, result.reason)
    gc.collect()  # a plan's mapping goes with its last reference, not at once
    after = Footprint.now()
    assert len(kinds) == 20
    assert before.differences(after) == []


def test_a_partitioned_table_run_closes_its_memfd(tmp_path: Path) -> None:
    run_kind(tmp_path, "partitioned", 0)
    gc.collect()
    before = Footprint.now()
    for n in range(1, 3):
        assert run_kind(tmp_path, "partitioned", n).succeeded
    gc.collect()
    assert Footprint.now().memfds == before.memfds


def test_a_host_object_frozen_before_stays_frozen(tmp_path: Path) -> None:
    host_objects = [{"host": i} for i in range(1000)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen >= len(host_objects)
        assert run_kind(tmp_path, "files", 1).succeeded
        assert run_kind(tmp_path, "partitioned", 2).succeeded
        # Still in the permanent generation: not among the objects the collector tracks
        # (gc.unfreeze() would have moved them all back). The count itself only drops by
        # frozen objects freed meanwhile.
        tracked = {id(o) for o in gc.get_objects()}
        assert id(host_objects) not in tracked
        assert not any(id(o) in tracked for o in host_objects)
        assert gc.get_freeze_count() >= frozen - 100
    finally:
        gc.unfreeze()


def test_run_from_a_thread_leaves_a_normal_run_folder_and_no_handlers(tmp_path: Path) -> None:
    run_kind(tmp_path, "files", 0)  # warm-up
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    before = Footprint.now()
    results: list[parajob.RunResult] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n, kind in enumerate(("files", "command", "partitioned"), start=1):
                results.append(run_kind(tmp_path, kind, n))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=work, name="host-worker")
    thread.start()
    thread.join(timeout=180)
    assert not thread.is_alive() and errors == []
    assert [r.status for r in results] == ["succeeded"] * 3
    run = results[0].run_dir
    assert {"parajob-run.json", "run_result.json", "step"} <= {p.name for p in run.iterdir()}
    assert (run / "step" / "logs" / "job_result.json").is_file()
    assert sorted((run / "step" / "outputs" / "out").read_text().split()) == [
        f"f{i:05d}.txt" for i in range(12)
    ]
    gc.collect()
    assert before.differences(Footprint.now()) == []
    assert {s: signal.getsignal(s) for s in handlers} == handlers


SLOW = """
import os, time
from pathlib import Path

MARKERS = Path(os.environ["MARKERS"])

def run(mini_batch):
    name = os.path.basename(mini_batch[0])
    (MARKERS / name).write_text("started")
    if name == "f00010.txt":  # holds its worker until the run is cancelled (or resumed)
        deadline = time.monotonic() + 60
        while not (MARKERS / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return [os.path.basename(p) for p in mini_batch]
"""


def test_cancel_from_another_thread_then_resume_gives_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    pipeline = write_job(tmp_path, SLOW, files=20, mini_batch_size=1, concurrency=2)
    cancel = threading.Event()

    def cancel_when_held() -> None:  # the slow mini-batch has started: cancel now
        deadline = time.monotonic() + 60
        while not (markers / "f00010.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        cancel.set()

    canceller = threading.Thread(target=cancel_when_held)
    canceller.start()
    result = parajob.run(pipeline, run_dir=tmp_path / "run", cancel=cancel)
    canceller.join()
    assert result.status == "cancelled", result.reason
    assert result.steps[0].status == "cancelled"
    assert not (tmp_path / "run" / "step" / "outputs" / "out").exists()
    assert children() == []

    (markers / "release").write_text("")
    resumed = parajob.run(run_dir=tmp_path / "run", resume=True)
    assert resumed.status == "succeeded", resumed.reason
    rows = (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines()
    assert rows == [f"f{i:05d}.txt" for i in range(20)]  # each once, in mini-batch order


def test_progress_callbacks_arrive_and_end_with_a_final_one(tmp_path: Path) -> None:
    events: list[parajob.ProgressEvent] = []
    threads = set()

    def record(event: parajob.ProgressEvent) -> None:
        threads.add(threading.current_thread())
        events.append(event)

    pipeline = write_job(tmp_path, ECHO, files=12, mini_batch_size=3)
    result = parajob.run(pipeline, run_dir=tmp_path / "run", on_progress=record)
    assert result.succeeded
    assert threads == {threading.current_thread()}  # called in the calling thread
    assert events and events[-1].final and events[-1].step == "step"
    assert (events[-1].total_batches, events[-1].done_batches, events[-1].items_out) == (4, 4, 12)
    assert [e.final for e in events].count(True) == 1


def test_a_progress_callback_that_raises_does_not_break_the_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def broken(event: parajob.ProgressEvent) -> None:
        calls.append(event)
        raise RuntimeError("display gone")

    pipeline = write_job(tmp_path, ECHO, files=12, mini_batch_size=3)
    result = parajob.run(pipeline, run_dir=tmp_path / "run", on_progress=broken)
    assert result.succeeded and len(calls) == 1
    assert sorted(result.steps[0].output.read_text().split()) == [
        f"f{i:05d}.txt" for i in range(12)
    ]  # type: ignore[union-attr]
    assert capfd.readouterr() == ("", "")  # quiet: the warning goes to the logger only
    assert any(
        "on_progress raised RuntimeError: display gone" in r.getMessage()
        for r in caplog.records
        if r.name == "parajob"
    )


HOLDS = """
import os, time
from pathlib import Path

def run(mini_batch):
    time.sleep(0.05)  # long enough for the other thread's run to start and end meanwhile
    return [os.path.basename(p) for p in mini_batch]
"""


def test_runs_from_two_threads_at_once_both_succeed(tmp_path: Path) -> None:
    """The local executor sweeps every child this process started during a step: two runs
    at once would kill each other's workers, so they go one after the other."""
    results: dict[str, parajob.RunResult] = {}
    pipelines = {}
    for name, files in (("long", 40), ("short", 4)):
        (tmp_path / name).mkdir()
        pipelines[name] = write_job(
            tmp_path / name, HOLDS if name == "long" else ECHO, files=files, mini_batch_size=1
        )
    threads = [
        threading.Thread(
            target=lambda n=name: results.__setitem__(
                n, parajob.run(pipelines[n], run_dir=tmp_path / n / "run")
            )
        )
        for name in pipelines
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert {n: r.status for n, r in results.items()} == {"long": "succeeded", "short": "succeeded"}
    assert results["long"].steps[0].failed_attempts == 0
    assert results["long"].steps[0].output.read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(40)
    ]  # type: ignore[union-attr]


def test_a_run_started_from_its_own_progress_callback_is_refused(tmp_path: Path) -> None:
    pipeline = write_job(tmp_path, ECHO, files=6)
    refused: list[BaseException] = []

    def nested(event: parajob.ProgressEvent) -> None:
        try:
            parajob.run(pipeline, run_dir=tmp_path / "nested")
        except parajob.SpecError as exc:
            refused.append(exc)

    assert parajob.run(pipeline, run_dir=tmp_path / "run", on_progress=nested).succeeded
    assert refused and "called from inside a run" in str(refused[0])
    assert not (tmp_path / "nested").exists()


def test_ctrl_c_in_the_host_propagates_and_leaves_the_run_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parajob.run installs no handler: SIGINT is the host's KeyboardInterrupt, raised out
    of the run once its workers are stopped and its journal written."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    pipeline = write_job(tmp_path, SLOW, files=20, mini_batch_size=1, concurrency=2)

    def interrupt_when_held() -> None:
        deadline = time.monotonic() + 60
        while not (markers / "f00010.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_held).start()
    with pytest.raises(KeyboardInterrupt):
        parajob.run(pipeline, run_dir=tmp_path / "run")
    assert children() == []
    (markers / "release").write_text("")
    resumed = parajob.run(run_dir=tmp_path / "run", resume=True)
    assert resumed.succeeded, resumed.reason
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(20)
    ]


def test_a_map_and_a_pipeline_run_from_two_threads_at_once_both_succeed(tmp_path: Path) -> None:
    """map_batches takes the same one-run-at-a-time lock as parajob.run (and its stream's
    background thread does too): run at once, either would sweep the other's workers."""
    pipeline = write_job(tmp_path, HOLDS, files=40, mini_batch_size=1)
    results: dict[str, object] = {}

    def slow(batch: list[int]) -> list[int]:
        time.sleep(0.05)
        return [x + 1 for x in batch]

    threads = [
        threading.Thread(
            target=lambda: results.__setitem__(
                "run", parajob.run(pipeline, run_dir=tmp_path / "run")
            )
        ),
        threading.Thread(
            target=lambda: results.__setitem__(
                "map", parajob.map_batches(slow, range(40), workers=2)
            )
        ),
        threading.Thread(
            target=lambda: results.__setitem__(
                "stream", list(parajob.map_batches(slow, range(30), workers=2, stream=True))
            )
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    run = results["run"]
    assert isinstance(run, parajob.RunResult) and run.status == "succeeded"
    assert run.steps[0].failed_attempts == 0
    mapped = results["map"]
    assert isinstance(mapped, parajob.MapResult)
    assert mapped.results == [x + 1 for x in range(40)] and mapped.run.succeeded
    assert mapped.run.steps[0].failed_attempts == 0
    assert results["stream"] == [x + 1 for x in range(30)]


def test_the_hosts_own_children_started_during_a_run_are_left_alone(tmp_path: Path) -> None:
    """A run sweeps its workers' descendants at its end; children the host program itself
    starts meanwhile (subprocess.Popen, a fork as multiprocessing makes) are not theirs."""
    pipeline = write_job(tmp_path, HOLDS, files=20, mini_batch_size=1)
    started: list[int] = []

    def on_progress(event: parajob.ProgressEvent) -> None:
        if started or event.final:
            return
        started.append(subprocess.Popen(["sleep", "60"]).pid)
        pid = os.fork()
        if pid == 0:  # a host's own fork, no exec: it keeps the host's memory mappings
            time.sleep(60)
            os._exit(0)
        started.append(pid)

    try:
        result = parajob.run(pipeline, run_dir=tmp_path / "run", on_progress=on_progress)
        assert result.succeeded
        assert len(started) == 2
        for pid in started:
            os.kill(pid, 0)  # still alive: raises ProcessLookupError if the run killed it
            assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # not reaped by the run either
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


LINGERS = """
import os, signal, time

def init():
    # A worker that takes a second to go after SIGTERM: meanwhile a worker the engine did
    # not know would go on ending attempts, which the engine then drains.
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.0), os._exit(0)))

def run(mini_batch):
    open(os.path.join(os.environ["MARKERS"], str(os.getpid())), "w").close()
    return [os.path.basename(p) for p in mini_batch]
"""


def test_a_ctrl_c_while_a_worker_is_being_started_leaves_no_unknown_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's SIGINT landing between a worker's fork and the engine recording it used
    to leave a live worker the engine did not know: its first result then raised KeyError
    out of the run's clean-up instead of the KeyboardInterrupt. The fork and its record are
    now done with SIGINT/SIGTERM held, so the interrupt comes right after."""
    from parajob.executors import reaping

    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("MARKERS", str(markers))
    # Enough mini-batches that the second worker gets some before the first ran them all.
    pipeline = write_job(tmp_path, LINGERS, files=2000, mini_batch_size=1, concurrency=2)
    real_spawned = reaping.Descendants.spawned
    forks: list[int] = []

    def spawned_then_interrupted(self: reaping.Descendants, pid: int) -> None:
        real_spawned(self, pid)
        forks.append(pid)
        if len(forks) == 2:  # mid-way through starting the second worker, once it ran one
            deadline = time.monotonic() + 30
            while not (markers / str(pid)).exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(reaping.Descendants, "spawned", spawned_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        parajob.run(pipeline, run_dir=tmp_path / "run")
    monkeypatch.setattr(reaping.Descendants, "spawned", real_spawned)
    assert children() == []
    resumed = parajob.run(run_dir=tmp_path / "run", resume=True)
    assert resumed.succeeded and resumed.steps[0].failed_attempts == 0, resumed.reason
    assert (tmp_path / "run" / "step" / "outputs" / "out").read_text().splitlines() == [
        f"f{i:05d}.txt" for i in range(2000)
    ]
