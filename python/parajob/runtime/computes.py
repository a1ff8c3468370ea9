"""Which steps run on a Dask cluster: the step's ``compute`` name mapped to a scheduler.

    --compute NAME=tcp://host:8786 (CLI, repeatable) / parajob.run(compute={NAME: ADDR})
        |  check_address(): a Dask scheduler address, else bad input (exit 2)
        v
    RunOptions.computes {name: address}  (what the caller gave)
        |  runtime.run.execute -> with_file_computes(): the computes file's mapping
        |  ($PARAJOB_COMPUTES, else $XDG_CONFIG_HOME/parajob/computes.yml, else
        |  ~/.config/parajob/computes.yml) under it: the caller's names win
        v
    RunOptions.computes {name: address}  (what the run uses)
        |  runner: compute = step.compute or pipeline.default_compute
        v
    cluster_for(options, compute) -> address: the step runs on that cluster (executors/dask)
                                   -> None: on this machine, as ever; instance_count > 1
                                      then prints simulated_nodes_note()

Names match with or without Azure's ``azureml:`` prefix (``compute: azureml:cpu-cluster``
is the compute named cpu-cluster: same_compute); a name the caller gave that no step of
the pipeline uses is bad input (unused_computes: a typo must not run a cluster step here).

Invariants: the precedence rule (given names over the file's) lives only in
with_file_computes; a computes file that is bad in any way is a SpecError naming the file
and the field, raised before the run folder exists; a serial run reads no file (it runs
everything in this process). Nothing here imports distributed: the local path never does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import yaml

from parajob.errors import Diagnostic, SpecError
from parajob.runtime.options import RunOptions
from parajob.spec.report import Reporter
from parajob.spec.yaml_nodes import compose, get_str, named_entries, read_mapping

__all__ = [
    "COMPUTES_ENV",
    "SCHEMES",
    "check_address",
    "cluster_for",
    "compute_origin",
    "computes_file",
    "given_computes",
    "mapped_name",
    "read_computes_file",
    "same_compute",
    "simulated_nodes_note",
    "unused_computes",
    "with_file_computes",
]

COMPUTES_ENV = "PARAJOB_COMPUTES"  # a computes file's path; empty: no file at all
FILE_EXAMPLE = "computes:\n    cpu-cluster: tcp://10.0.0.5:8786"

SCHEMES = ("tcp", "tls", "inproc", "ucx", "ws", "wss")  # Dask's comm schemes


def check_address(name: str, address: str) -> str | None:
    """Why ``address`` is not a Dask scheduler address for compute ``name``; None if it is.
    ``host:port`` alone means ``tcp://host:port``, as in Dask."""
    if not name:
        return "the compute name is empty"
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in SCHEMES:
        return (
            f"compute {name!r}: {address!r} is not a Dask scheduler address (scheme "
            f"{scheme!r}; expected one of {', '.join(s + '://' for s in SCHEMES)})"
        )
    host, colon, port = rest.rpartition(":")
    if scheme in ("tcp", "tls") and (not colon or not host or not port.isdigit()):
        return (
            f"compute {name!r}: {address!r} is not a Dask scheduler address "
            "(expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786)"
        )
    return None


def normalise(address: str) -> str:
    """``host:port`` -> ``tcp://host:port``; other addresses as given."""
    return address if "://" in address else f"tcp://{address}"


AZUREML_PREFIX = "azureml:"  # Azure ML's reference to a workspace's compute by name


def same_compute(a: str, b: str) -> bool:
    """Whether two compute names name one compute: ``azureml:cpu-cluster`` (as the Azure
    YAML writes it) is ``cpu-cluster`` (as --compute is usually given)."""
    return a.removeprefix(AZUREML_PREFIX) == b.removeprefix(AZUREML_PREFIX)


def mapped_name(options: RunOptions, compute: str | None) -> str | None:
    """The name under which ``compute`` is mapped in options.computes (as written there),
    or None: among the caller's names, then the file's, the exact name first, then one
    that differs only by ``azureml:``."""
    if compute is None:
        return None
    given = [name for name in options.computes if name not in options.computes_from_file]
    from_file = [name for name in options.computes if name in options.computes_from_file]
    for names in (given, from_file):  # the caller's names win over the file's, as ever
        for name in names:
            if name == compute:
                return name
        for name in names:
            if same_compute(name, compute):
                return name
    return None


def cluster_for(options: RunOptions, compute: str | None) -> str | None:
    """The scheduler address a step with this ``compute`` runs on, or None (this machine)."""
    computes: Mapping[str, str] = options.computes
    name = mapped_name(options, compute)
    return None if name is None else normalise(computes[name])


def given_computes(options: RunOptions) -> dict[str, str]:
    """The mappings the caller gave (--compute / compute=), not the computes file's."""
    return {
        name: address
        for name, address in options.computes.items()
        if name not in options.computes_from_file
    }


def unused_computes(options: RunOptions, used: set[str], source: str) -> SpecError | None:
    """A SpecError for each name the caller gave that names none of the pipeline's
    computes ``used`` (the steps' and default_compute), None when all are used. The
    computes file may map clusters no step uses: it serves many pipelines."""
    shown = ", ".join(sorted(used)) or "(none: no step names a compute)"
    found = [
        Diagnostic(
            source,
            None,
            None,
            "",
            f"--compute {name}={address}: no step of the pipeline has compute "
            f"{name!r}, so nothing would run on that cluster (the pipeline's "
            f"computes: {shown})",
            "give a name the pipeline uses (`compute:` of a step or "
            "`default_compute:`), with or without the azureml: prefix",
        )
        for name, address in given_computes(options).items()
        if not any(same_compute(name, u) for u in used)
    ]
    return SpecError(found) if found else None


def simulated_nodes_note(step: str, instance_count: int, compute: str | None) -> str:
    """The one-line note a local run of instance_count > 1 prints."""
    mapped = f"--compute {compute}=tcp://HOST:PORT" if compute else "--compute NAME=tcp://HOST:PORT"
    return (
        f"parajob: note: step {step}: the {instance_count} nodes of instance_count are "
        f"simulated on this machine (to run them on a Dask cluster: {mapped})"
    )


def computes_file() -> Path | None:
    """The computes file this run reads: $PARAJOB_COMPUTES (must exist; empty: none), else
    $XDG_CONFIG_HOME/parajob/computes.yml (XDG_CONFIG_HOME defaults to ~/.config) when it
    exists, else None."""
    given = os.environ.get(COMPUTES_ENV)
    if given is not None:
        return Path(given).expanduser() if given else None
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    path = Path(config) / "parajob" / "computes.yml"
    return path if path.is_file() else None


def read_computes_file(path: Path) -> dict[str, str]:
    """``computes: {NAME: ADDRESS}`` from ``path``; SpecError naming the file, the line and
    the field (computes.NAME) for anything else."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        via = f" (${COMPUTES_ENV})" if os.environ.get(COMPUTES_ENV) else ""
        raise SpecError(
            [
                Diagnostic(
                    shown,
                    None,
                    None,
                    "",
                    f"cannot read the computes file{via}: {why}",
                    f"fix the path, or unset {COMPUTES_ENV}" if via else "fix or remove the file",
                )
            ]
        ) from exc
    r = Reporter(shown, text)
    computes = _computes_in(r, compose(text, r))
    if r.error_count:  # in the file's order: fixed top to bottom
        raise SpecError(sorted(r.diagnostics, key=lambda d: (d.line or 0, d.column or 0)))
    return computes


def _computes_in(r: Reporter, root: yaml.Node | None) -> dict[str, str]:
    if r.error_count:  # invalid YAML, located by compose
        return {}
    if root is None:  # an empty file maps nothing
        return {}
    top = read_mapping(r, root, "", ("computes",))
    if top is None or "computes" not in top:
        if top is not None and not r.error_count:
            r.error(
                root,
                "computes",
                "missing required field 'computes'",
                f"a computes file looks like:  {FILE_EXAMPLE}",
            )
        return {}
    out: dict[str, str] = {}
    for entry in named_entries(r, top["computes"].value, "computes") or []:
        address = get_str(r, entry.value, entry.field)
        if address is None:
            continue
        name = str(entry.key.value)
        why = check_address(name, address)
        if why is not None:
            r.error(entry.value, entry.field, why, "e.g. cpu-cluster: tcp://10.0.0.5:8786")
        else:
            out[name] = address
    return out


def with_file_computes(options: RunOptions) -> RunOptions:
    """The run's options with the computes file's mapping added under the given one
    (--compute / compute= win, name by name). A serial run reads no file."""
    if options.serial:
        return options
    path = computes_file()
    if path is None:
        return options
    from_file = read_computes_file(path)
    merged = {**from_file, **options.computes}
    origins = {name: str(path) for name in from_file if name not in options.computes}
    return replace(options, computes=merged, computes_from_file=origins)


def compute_origin(options: RunOptions, compute: str) -> str:
    """Where the mapping of ``compute`` was written, for messages: ``--compute NAME=ADDR``
    or ``computes.NAME in FILE``."""
    compute = mapped_name(options, compute) or compute
    file = options.computes_from_file.get(compute)
    if file is not None:
        return f"computes.{compute} in {file}"
    return f"--compute {compute}={options.computes.get(compute, '')}"
