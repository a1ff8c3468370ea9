"""Which steps run on a Dask cluster: the step's ``compute`` name mapped to a scheduler.

    --compute NAME=tcp://host:8786 (CLI, repeatable) / parajob.run(compute={NAME: ADDR})
        |  check_address(): a Dask scheduler address, else bad input (exit 2)
        v
    RunOptions.computes {name: address}
        |  runner: compute = step.compute or pipeline.default_compute
        v
    cluster_for(options, compute) -> address: the step runs on that cluster (executors/dask)
                                   -> None: on this machine, as ever; instance_count > 1
                                      then prints simulated_nodes_note()

Nothing here imports distributed: the local path never does.
"""

from __future__ import annotations

from collections.abc import Mapping

from parajob.runtime.options import RunOptions

__all__ = ["SCHEMES", "check_address", "cluster_for", "simulated_nodes_note"]

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
        return (f"compute {name!r}: {address!r} is not a Dask scheduler address (scheme "
                f"{scheme!r}; expected one of {', '.join(s + '://' for s in SCHEMES)})")
    host, colon, port = rest.rpartition(":")
    if scheme in ("tcp", "tls") and (not colon or not host or not port.isdigit()):
        return (f"compute {name!r}: {address!r} is not a Dask scheduler address "
                "(expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786)")
    return None


def normalise(address: str) -> str:
    """``host:port`` -> ``tcp://host:port``; other addresses as given."""
    return address if "://" in address else f"tcp://{address}"


def cluster_for(options: RunOptions, compute: str | None) -> str | None:
    """The scheduler address a step with this ``compute`` runs on, or None (this machine)."""
    computes: Mapping[str, str] = options.computes
    if compute is None or compute not in computes:
        return None
    return normalise(computes[compute])


def simulated_nodes_note(step: str, instance_count: int, compute: str | None) -> str:
    """The one-line note a local run of instance_count > 1 prints."""
    mapped = f"--compute {compute}=tcp://HOST:PORT" if compute else "--compute NAME=tcp://HOST:PORT"
    return (f"parajob: note: step {step}: the {instance_count} nodes of instance_count are "
            f"simulated on this machine (to run them on a Dask cluster: {mapped})")
