"""Loading a user's entry script and calling init() / run() / shutdown() (docs/contract.md
§3.1), and checking that it imports before a run (:func:`start_probe` / :func:`finish_probe`)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass
class MiniBatchContext:
    """The second argument of run(mini_batch, mini_batch_context)."""

    minibatch_index: int
    partition_key_value: dict[str, Any] | None = None
    dataset: Any = None


@dataclass(frozen=True)
class EntryScript:
    module: ModuleType
    init: Callable[[], Any] | None
    run: Callable[..., Any]
    shutdown: Callable[[], Any] | None
    takes_context: bool


class EntryScriptError(Exception):
    """The entry script cannot be used as one (no run(), wrong signature)."""


def import_entry_script(code_dir: Path, entry_script: str) -> ModuleType:
    """Import the script as a module with code_dir first on sys.path. Runs its top level."""
    path = (code_dir / entry_script).resolve()
    sys.path.insert(0, str(code_dir))
    name = Path(entry_script).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling and relative helpers inside the script work
    spec.loader.exec_module(module)
    return module


def _parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []


def _required_positional(func: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in _parameters(func)
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _required_keyword_only(func: Callable[..., Any]) -> list[str]:
    return [p.name for p in _parameters(func) if p.default is p.empty and p.kind == p.KEYWORD_ONLY]


def bind_entry_script(module: ModuleType) -> EntryScript:
    """Find init/run/shutdown and decide how run() is called, from its signature."""
    path = getattr(module, "__file__", module.__name__)
    run = getattr(module, "run", None)
    if not callable(run):
        found = "" if run is None else f" (run is {type(run).__name__}, not a function)"
        raise EntryScriptError(f"{path}: defines no run(mini_batch) function{found}")
    try:
        params = [
            p
            for p in inspect.signature(run).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        has_varargs = any(
            p.kind == p.VAR_POSITIONAL for p in inspect.signature(run).parameters.values()
        )
    except (TypeError, ValueError):  # builtins without a signature: assume run(mini_batch)
        params, has_varargs = [], False
    required = [p for p in params if p.default is p.empty]
    if len(required) > 2 or (not params and not has_varargs):
        takes = f"it requires {len(required)} arguments" if params else "it takes none"
        raise EntryScriptError(
            f"{path}: run() must take (mini_batch) or (mini_batch, mini_batch_context); {takes}"
        )
    keyword_only = _required_keyword_only(run)
    if keyword_only:
        raise EntryScriptError(
            f"{path}: run() requires keyword-only argument(s) "
            f"{', '.join(keyword_only)}, which the runtime never passes"
        )
    takes_context = len(params) >= 2 or has_varargs
    init = getattr(module, "init", None)
    shutdown = getattr(module, "shutdown", None)
    for name, func in (("init", init), ("shutdown", shutdown)):
        if callable(func) and _required_positional(func):
            raise EntryScriptError(
                f"{path}: {name}() must take no arguments; it requires "
                f"{', '.join(_required_positional(func))}"
            )
    return EntryScript(
        module=module,
        init=init if callable(init) else None,
        run=run,
        shutdown=shutdown if callable(shutdown) else None,
        takes_context=takes_context,
    )


def module_names(body: list[ast.stmt]) -> set[str]:
    """Names a module binds at its top level, including inside if/try/with/for blocks
    (``try: import torch; def run(...)`` ``except ImportError: def run(...)``); "*" for a
    star import, whose names only an import shows (parajob validate does that)."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                names |= module_names(
                    [n for n in inner if isinstance(n, ast.stmt)]
                    + [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                )
    return names


def static_problem(path: Path) -> dict[str, Any] | None:
    """What reading (not running) the entry script shows, as the probe's record: a syntax
    error, or no run() bound at its top level; None when neither (or it cannot be read:
    the step's own check says so). For a step whose workers are the import check
    (runtime/preflight.py): the two mistakes a user makes most are still refused before
    anything starts, with the probe's words."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except OSError:
        return None
    except SyntaxError as exc:
        return {"ok": False, "problem": f"syntax error: {exc.msg}", "line": exc.lineno}
    names = module_names(tree.body)
    if "run" not in names and "*" not in names:
        return {"ok": False, "problem": "defines no run(mini_batch) function", "line": None}
    return None


# -- the import check of `parajob validate` / `parajob run` ------------------------------
# The driver later forks workers and must have no other threads (docs/design.md §7.1: fork
# first, then threads); importing user code may start some (torch, grpc, ...). So the check
# imports the script in a short-lived subprocess set up like a worker, and reads back one JSON
# record from a file (the script may print anything to stdout while it is imported).
#
# The probe never outlives the check: it is its own process group (start_new_session),
# dies with parajob (PR_SET_PDEATHSIG, set first thing in the probe), and once it exits or
# its time is up its whole group is SIGKILLed. Nothing waits on a pipe: stderr goes to a
# file beside the result, so a grandchild the import started (holding the probe's stdout
# or stderr) cannot keep the check waiting for EOF.

IMPORT_TIMEOUT_S = float(os.environ.get("PARAJOB_IMPORT_TIMEOUT", "300"))


@dataclass(frozen=True)
class ProbeResult:
    """What importing an entry script showed: ok, or the problem and the traceback of the
    user's code (frames of importlib and parajob left out)."""

    ok: bool
    problem: str = ""
    detail: str = ""
    line: int | None = None  # in the entry script, for syntax errors and missing run()
    takes_context: bool = False


def start_probe(
    code_dir: Path,
    entry_script: str,
    argv: Sequence[str],
    environment: Mapping[str, str],
    result_file: Path,
) -> subprocess.Popen[bytes]:
    """Start the check; returns at once. Pair with :func:`finish_probe`."""
    request = {
        "code_dir": str(code_dir),
        "entry_script": entry_script,
        "argv": list(argv),
        "environment": dict(environment),
        "result": str(result_file),
        "parent": os.getpid(),
    }
    with open(_stderr_file(result_file), "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "parajob.runtime.entry_script", json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=result_file.parent,
            start_new_session=True,
        )


def _stderr_file(result_file: Path) -> Path:
    return result_file.with_name(result_file.name + ".stderr")


def _wait_then_kill_group(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to timeout for the probe to exit, SIGKILL its process group, reap it.
    Returns whether it exited in time. The group is killed before the probe is reaped: its
    zombie keeps the group id from being reused by an unrelated process meanwhile."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (kernel < 5.3): reap first, then the group (best effort)
        try:
            proc.wait(timeout)
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        _kill_group(proc.pid)
        proc.wait()
        return exited
    try:
        exited = bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
    _kill_group(proc.pid)
    proc.wait()
    return exited


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_probe(proc: subprocess.Popen[bytes]) -> None:
    """Kill a probe not finished with finish_probe (the check was interrupted) and its group."""
    if proc.returncode is None:
        _wait_then_kill_group(proc, 0)


def finish_probe(
    proc: subprocess.Popen[bytes], result_file: Path, timeout: float = IMPORT_TIMEOUT_S
) -> ProbeResult:
    """Wait for a probe (at most ``timeout`` seconds), kill its whole process group (what
    the import started included) and read its result. Never waits on a grandchild."""
    if not _wait_then_kill_group(proc, timeout):
        return ProbeResult(
            False,
            f"importing the entry script took more than {timeout:g} s",
            "set PARAJOB_IMPORT_TIMEOUT (seconds) to wait longer",
        )
    try:
        data = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            stderr = _stderr_file(result_file).read_bytes()[-65536:]
        except OSError:
            stderr = b""
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-15:]
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with code {proc.returncode}"
        )
        return ProbeResult(False, f"the process importing the entry script {how}", "\n".join(tail))
    return probe_result(data)


def _user_traceback(exc: BaseException) -> str:
    """The traceback without frames of importlib's machinery or of parajob."""
    ours = str(Path(__file__).resolve().parents[1])
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(ours) and not f.filename.startswith("<frozen")
    ]
    text = "".join(traceback.format_list(frames))
    return (text + "".join(traceback.format_exception_only(type(exc), exc))).rstrip()


def _probe_main(request: dict[str, Any]) -> dict[str, Any]:
    from parajob.compat import install_azureml_user_shim
    from parajob.compat.parallel_run import EntryScript as CompatEntryScript

    code_dir, entry_script = Path(request["code_dir"]), str(request["entry_script"])
    work = Path(request["result"]).parent
    os.environ.update(request["environment"])
    os.environ.setdefault("AZUREML_BI_OUTPUT_PATH", str(work / "output"))
    sys.argv = [str(code_dir / entry_script), *request["argv"]]
    install_azureml_user_shim()
    CompatEntryScript.configure(
        agent_name="process001",
        log_dir=work / "logs",
        log_file=work / "logs" / "process001.log.txt",
        output_dir=work / "output",
        logging_level="INFO",
    )
    try:
        module = import_entry_script(code_dir, entry_script)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        return import_failure(exc)
    try:
        script = bind_entry_script(module)
    except EntryScriptError as exc:
        return bind_failure(module, exc)
    return {"ok": True, "takes_context": script.takes_context}


# -- what a failed import or bind says: one record for the probe and for the workers ------
# The probe (above) and a worker of `parajob run`'s first step (runtime/worker.py, which
# is the check there: runtime/preflight.py) describe the same failure with the same record,
# so that runtime/preflight.script_diagnostic turns either into the same message.


def import_failure(exc: BaseException) -> dict[str, Any]:
    """The record of an import that raised ``exc`` (a syntax error has its line)."""
    if isinstance(exc, SyntaxError):
        return {
            "ok": False,
            "problem": f"syntax error: {exc.msg}",
            "line": exc.lineno,
            "detail": _user_traceback(exc),
        }
    return {
        "ok": False,
        "problem": f"importing it raised {type(exc).__name__}: {exc}",
        "detail": _user_traceback(exc),
    }


def bind_failure(module: ModuleType, exc: EntryScriptError) -> dict[str, Any]:
    """The record of a module bind_entry_script refused (no run(), a bad signature)."""
    run = getattr(module, "run", None)
    line = getattr(getattr(run, "__code__", None), "co_firstlineno", None)
    return {"ok": False, "problem": str(exc).split(": ", 1)[-1], "line": line}


def probe_result(data: Mapping[str, Any]) -> ProbeResult:
    """A record of import_failure / bind_failure / the probe as a ProbeResult."""
    return ProbeResult(
        bool(data["ok"]),
        str(data.get("problem", "")),
        str(data.get("detail", "")),
        data.get("line"),
        bool(data.get("takes_context")),
    )


def _die_with(parent: int) -> None:
    """SIGKILL this probe, and its whole process group, when parajob dies; exit now if it
    already has. PR_SET_PDEATHSIG kills only the probe; what the import started (a helper
    server, `subprocess.Popen`) stays in the probe's group, so a guardian forked before the
    import (no thread exists yet) waits for parajob's death and kills the group."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)
    try:
        parent_fd = os.pidfd_open(parent)
    except OSError:  # no pidfd (kernel < 5.3): the probe alone dies with parajob
        return
    try:
        guardian = os.fork()
    except OSError:  # fork refused (a process limit): the probe alone dies with parajob
        guardian = -1
    if guardian == 0:  # the guardian: same group, no Python left to run but this
        try:
            os.closerange(3, parent_fd)
            # Only parajob's death: when the probe ends, parajob kills its group (this
            # guardian with it). Waiting on the probe too raced PDEATHSIG: the probe, killed
            # with parajob, could wake us first, and the group survived.
            select.select([parent_fd], [], [])
            os.killpg(0, signal.SIGKILL)
        finally:
            os._exit(0)
    os.close(parent_fd)


if __name__ == "__main__":  # the subprocess started by start_probe()
    _request = json.loads(sys.argv[1])
    _die_with(int(_request["parent"]))
    _result = _probe_main(_request)
    with open(_request["result"], "w", encoding="utf-8") as _f:
        json.dump(_result, _f)
    sys.stdout.flush()
    os._exit(0)  # never run the user's atexit handlers or wait for its threads
