"""The steps' dependency graph, from ``${{parent.jobs.<step>.outputs.<out>}}`` bindings.

Scanned from the YAML before any step is read, so that steps can be read producers first
(a consumer's input then gets its producer's output path) and run in that order. Edges that
name a missing step, a step's own output, or that close a cycle are reported here, once,
at the binding that makes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from parajob.spec.bindings import find_refs
from parajob.spec.report import Reporter, did_you_mean
from parajob.spec.yaml_nodes import STR, Entry, entries, field_join

__all__ = ["Edge", "scan_edges", "order_steps"]


@dataclass(frozen=True)
class Edge:
    consumer: str
    producer: str
    output: str
    node: yaml.Node  # the scalar holding the binding
    text: str  # the binding as written
    field: str


def _scalars(node: yaml.Node, fld: str) -> Iterator[tuple[yaml.ScalarNode, str]]:
    if isinstance(node, yaml.ScalarNode) and node.tag == STR:
        yield node, fld
    elif isinstance(node, yaml.MappingNode):
        for key, value in entries(node):
            yield from _scalars(value, field_join(fld, str(getattr(key, "value", ""))))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _scalars(item, field_join(fld, i))


def scan_edges(r: Reporter, steps: list[Entry]) -> dict[str, list[Edge]]:
    """Each step's edges to the steps it reads from (only in its ``inputs``, where Azure
    allows them). Bindings to a missing step or to the step itself are reported and
    dropped."""
    names = [str(e.key.value) for e in steps]
    edges: dict[str, list[Edge]] = {name: [] for name in names}
    for step in steps:
        name = str(step.key.value)
        if not isinstance(step.value, yaml.MappingNode):
            continue
        for key, value in entries(step.value):
            if getattr(key, "value", None) != "inputs":
                continue
            for node, fld in _scalars(value, field_join(step.field, "inputs")):
                for ref in find_refs(str(node.value)):
                    if ref.scope != "parent.jobs" or ref.step is None:
                        continue
                    where = r.find(node, ref.text)
                    if ref.step == name:
                        r.error(
                            where,
                            fld,
                            f"{ref.text}: step '{name}' cannot read its own output",
                            "a step's inputs come from the pipeline or from "
                            "steps that run before it",
                        )
                    elif ref.step not in edges:
                        others = [n for n in names if n != name]
                        r.error(
                            where,
                            fld,
                            f"{ref.text} names no step '{ref.step}'",
                            did_you_mean(ref.step, others)
                            or (
                                f"the pipeline's steps: {', '.join(others)}"
                                if others
                                else "the pipeline has no other step"
                            ),
                        )
                    else:
                        edges[name].append(Edge(name, ref.step, ref.name, node, ref.text, fld))
    return edges


def order_steps(r: Reporter, edges: dict[str, list[Edge]]) -> tuple[list[str], set[str]]:
    """(every step, producers before consumers and otherwise in YAML order; the steps on a
    cycle). Each cycle is reported once, at the binding of its first step (YAML order)."""
    pending = {name: {e.producer for e in step_edges} for name, step_edges in edges.items()}
    order: list[str] = []
    while True:
        ready = [name for name, needs in pending.items() if not needs]
        if not ready:
            break
        name = ready[0]  # one at a time keeps YAML order among independent steps
        order.append(name)
        del pending[name]
        for needs in pending.values():
            needs.discard(name)
    stuck = set(pending)
    reported: set[str] = set()
    for name in pending:
        if name in reported:
            continue
        cycle = _cycle_from(name, pending)
        if cycle is None:
            continue  # only waits on a cycle; the cycle itself is reported
        reported.update(cycle)
        first = cycle[0]
        edge = next(e for e in edges[first] if e.producer == cycle[1 % len(cycle)])
        flow = [first, *reversed(cycle[1:]), first]  # cycle lists "reads from"; show data flow
        r.error(
            r.find(edge.node, edge.text),
            edge.field,
            f"the steps form a cycle: {' -> '.join(flow)} (each reads the previous one's output)",
            "a step can only read outputs of steps that do not depend on it",
        )
    return order + [name for name in edges if name in stuck], stuck


def _cycle_from(start: str, pending: dict[str, set[str]]) -> list[str] | None:
    """A cycle through ``start`` in the waiting graph, as a list of steps, or None."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in path:
            return path[path.index(name) :]
        if name in seen:
            return None
        seen.add(name)
        path.append(name)
        for producer in sorted(pending.get(name, ())):
            found = visit(producer)
            if found is not None:
                return found
        path.pop()
        return None

    cycle = visit(start)
    return cycle if cycle is not None and start in cycle else None
