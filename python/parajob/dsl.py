"""``parajob.dsl.pipeline``: build a pipeline from a Python function, as ``azure.ai.ml.dsl``.

Data flow::

    @dsl.pipeline(display_name=..., default_compute=...)
    def my_pipeline(data, n=5):            # parameters: pipeline inputs
        prep = prepare(raw=data)           # nodes made here are recorded (entities.nodes)
        score = scorer(images=prep.outputs.images, top=n)
        return {"scores": score.outputs.scores}   # pipeline outputs
    job = my_pipeline(data=Input(path="./d"))     # -> parajob.Pipeline

Calling the function runs its body once with each parameter as a ``PipelineInput`` (binding
to it writes ``${{parent.inputs.<name>}}``). A profile hook on this one frame reads its
local variables at return, to name the nodes as the SDK does: a name set on the node
(``node.name = "x"``), else the variable it was assigned to, else its component's name,
with ``_1``, ``_2`` ... for repeats. The hook is this thread's only while the body runs,
and any profiler that was set is called as well and restored after.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

from parajob.entities.io import NodeOutput, Output, PipelineInput
from parajob.entities.nodes import (
    Node,
    building,
    check_node_name,
    pop_builder,
    push_builder,
)
from parajob.entities.pipeline import Pipeline
from parajob.entities.settings import PipelineJobSettings
from parajob.errors import ValidationError

__all__ = ["pipeline"]

F = TypeVar("F", bound=Callable[..., Any])
_SETTINGS = (
    "default_compute",
    "default_datastore",
    "continue_on_step_failure",
    "force_rerun",
    "default_environment",
)
_RETURN_ERROR = (
    "The return type of dsl.pipeline decorated function should be a mapping "
    "from output name to a node's output (node.outputs.<name>) with owner."
)


def pipeline(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
    experiment_name: str | None = None,
    tags: dict[str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """Decorate a function that composes nodes; calling it returns a :class:`Pipeline`.

    Keywords as ``azure.ai.ml.dsl.pipeline``: ``name``, ``version`` (recorded nowhere: a
    local pipeline has no registry), ``display_name`` (default: the function's name),
    ``description`` (default: its docstring's first line), ``experiment_name``, ``tags``,
    and the settings ``default_compute``, ``default_datastore``,
    ``continue_on_step_failure``, ``force_rerun``, ``default_environment`` (or
    ``settings={...}``). Usable bare (``@pipeline``) or called (``@pipeline(...)``).
    """
    settings = dict(kwargs.pop("settings", None) or {})
    for key in list(kwargs):
        if key in _SETTINGS:
            settings[key] = kwargs.pop(key)
    if kwargs:
        key = sorted(kwargs)[0]
        raise ValidationError(f"pipeline() got an unexpected keyword argument {key!r}", key)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ValidationError(
                    f"{fn.__name__!r}: dsl pipeline does not accept *args or "
                    "**kwargs as parameters.",
                    param.name,
                )
        doc = (inspect.getdoc(fn) or "").strip().splitlines()

        @functools.wraps(fn)
        def build(*args: Any, **call_kwargs: Any) -> Pipeline:
            if building() is not None:  # its steps would be dropped, its outputs unbound
                raise ValidationError(
                    f"{fn.__name__}(): a dsl.pipeline function called "
                    "inside another one (a sub-pipeline) is not supported "
                    "here: make its steps in the outer function, or run "
                    "the two pipelines one after the other"
                )
            values = _bind(fn, signature, args, call_kwargs)
            params = {k: PipelineInput(k, v) for k, v in values.items()}
            nodes, local_vars, returned = _run_body(fn, params)
            job = Pipeline(
                jobs=_name_nodes(nodes, local_vars),
                name=name,
                display_name=display_name or fn.__name__,
                description=description or (doc[0] if doc else None),
                experiment_name=experiment_name,
                tags=tags,
                settings=PipelineJobSettings(**settings),
                inputs={k: v for k, v in values.items() if v is not None},
                base_dir=os.getcwd(),
            )
            job.outputs = _outputs(returned, nodes)
            return job

        return build  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _bind(
    fn: Callable[..., Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The call's values by parameter, with the SDK's messages for a call that does not fit
    (a local run has no later moment to give a missing input)."""
    params, shown = signature.parameters, fn.__name__
    for key in kwargs:
        if key not in params:
            raise ValidationError(
                f"{shown}() got an unexpected keyword argument {key!r}"
                + (", valid keywords: " + ", ".join(map(repr, params)) + "." if params else "."),
                key,
            )
    if len(args) > len(params):
        raise ValidationError(
            f"{shown}() takes {len(params)} positional argument but {len(args)} were given."
        )
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError as exc:  # a value given both by position and by name
        raise ValidationError(f"{shown}(): {exc}") from exc
    missing = [
        k
        for k, p in params.items()
        if k not in bound.arguments and p.default is inspect.Parameter.empty
    ]
    if missing:
        raise ValidationError(
            f"{shown}() missing {len(missing)} required positional "
            f"argument(s): {', '.join(map(repr, missing))}.",
            missing[0],
        )
    bound.apply_defaults()
    for key, value in bound.arguments.items():
        if isinstance(value, (NodeOutput, PipelineInput, Node)):
            raise ValidationError(
                f"pipeline input {key!r}: expected an Input or a literal, "
                f"found {type(value).__name__} (nested pipelines are not "
                "supported)",
                key,
            )
    return dict(bound.arguments)


def _run_body(
    fn: Callable[..., Any], params: dict[str, PipelineInput]
) -> tuple[list[Node], dict[str, Any], Any]:
    """Run the function once, recording the nodes it makes and its locals at return."""
    captured: dict[str, Any] = {}
    previous = sys.getprofile()
    code = getattr(fn, "__code__", None)

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)
        if previous is not None:
            previous(frame, event, arg)  # type: ignore[arg-type]  # the event it got

    nodes = push_builder()
    sys.setprofile(profile)
    try:
        returned = fn(**params)
    finally:
        sys.setprofile(previous)
        pop_builder()
    return nodes, captured, returned


def _name_nodes(nodes: list[Node], local_vars: dict[str, Any]) -> dict[str, Node]:
    named: dict[int, str] = {}
    taken: set[str] = set()
    for var, value in local_vars.items():
        if not isinstance(value, Node) or not any(value is n for n in nodes):
            continue
        chosen = value.name if value.name and value.name != value.component_name else var
        if chosen == "_" or id(value) in named:
            continue
        check_node_name(chosen)
        if chosen in taken:
            raise ValidationError(
                f"Duplicate node name found in pipeline, node name: {chosen!r}.", "name"
            )
        named[id(value)] = chosen
        taken.add(chosen)
    counts: dict[str, int] = {}
    out: dict[str, Node] = {}
    for node in nodes:
        key = named.get(id(node))
        if key is None:
            base = node.name or node.component_name or node.type
            counts[base] = counts.get(base, 0) + 1
            key = base if counts[base] == 1 and base not in taken else f"{base}_{counts[base]}"
            while key in taken:
                counts[base] += 1
                key = f"{base}_{counts[base]}"
            check_node_name(key)
            taken.add(key)
        node.name = key
        out[key] = node
    return out


def _outputs(returned: Any, nodes: list[Node]) -> dict[str, Output]:
    """The returned mapping as pipeline outputs: each node output is bound to
    ``${{parent.outputs.<key>}}`` and its settings (type, mode, path, name, version) move
    to the pipeline output, as the SDK's ``copy_output_setting``."""
    if returned is None:
        return {}
    if not isinstance(returned, dict):
        raise ValidationError(_RETURN_ERROR)
    out: dict[str, Output] = {}
    for key, value in returned.items():
        if (
            not isinstance(key, str)
            or not isinstance(value, NodeOutput)
            or not any(value.owner is n for n in nodes)
        ):
            raise ValidationError(_RETURN_ERROR, str(key))
        out[key] = Output(
            type=value.type or "uri_folder",
            path=value.path,
            mode=value.mode,
            description=value.description,
            **value.extra,
        )  # name, version
        value.binding = f"${{{{parent.outputs.{key}}}}}"
    return out
