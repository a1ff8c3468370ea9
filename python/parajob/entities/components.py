"""``parajob.load_component(source=...)``: a component YAML file as a callable node.

    prepare = load_component(source="./script/prepare_data.yml")   # as azure.ai.ml's
    prep = prepare()                 # in a dsl.pipeline: a step `component: <that file>`

The node names the file (relative to the working directory, rebased when dumped) and
knows its input and output names, so that calling it and ``prep.outputs.<name>`` work as
in the SDK; the file itself is read and validated by ``parajob.spec`` when the pipeline is
loaded or run (its ports give the types, its paths stay relative to it). Fields set on the
node override the component's, as for a hand-written ``component:`` step.
"""

from __future__ import annotations

import os
import warnings
from typing import IO, Any

import yaml

from parajob.entities.io import NodeInput, NodeOutput
from parajob.entities.nodes import Command, Node, Parallel
from parajob.errors import ValidationError

__all__ = ["load_component"]


def load_component(source: str | os.PathLike[str] | IO[str] | None = None, **kwargs: Any) -> Node:
    """A node for the ``type: parallel`` or ``type: command`` component file ``source``
    (a path, or a file opened from one). ``path=`` is the SDK's deprecated name for
    ``source`` and works as there, with a DeprecationWarning.
    Raises ValidationError naming the file when it cannot be read or is not such a
    component (the rest is checked with file and line when the pipeline is validated)."""
    path_kw = kwargs.pop("path", None)
    if source is None and path_kw is not None:
        source = path_kw
        warnings.warn(
            "the 'path' input for load functions is deprecated. Please use 'source' instead.",
            DeprecationWarning,
            stacklevel=2,
        )
    if source is None:
        raise ValidationError("load_component() needs source=<path of a component YAML>", "source")
    if not isinstance(source, (str, os.PathLike)):
        # an open file: the step names the file it was opened from (its paths are
        # relative to it), so a stream without a file name cannot be a component here
        name = getattr(source, "name", None)
        if not isinstance(name, str) or not os.path.isfile(name):
            raise ValidationError(
                "load_component(source=...): expected the path of a "
                f"component YAML or a file opened from one, found "
                f"{type(source).__name__}",
                "source",
            )
        source = name
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8-sig") as f:
            tree = yaml.safe_load(f)
    except OSError as exc:
        raise ValidationError(
            f"cannot read component {path}: {exc.strerror or exc}", "source"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"component {path} is not valid YAML: {exc}", "source") from exc
    kind = tree.get("type") if isinstance(tree, dict) else None
    if kind not in ("parallel", "command"):
        raise ValidationError(
            f"component {path}: expected 'type: parallel' or 'type: command' "
            f"at the top, found {kind!r}",
            "source",
        )
    assert isinstance(tree, dict)
    node: Node = Parallel() if kind == "parallel" else Command()
    node.component = path
    node.name = node.component_name = str(tree.get("name") or "") or None
    node._inputs = {k: NodeInput(k, None) for k in tree.get("inputs") or {}}
    node._outputs = {k: NodeOutput(k, node) for k in tree.get("outputs") or {}}
    for key, value in kwargs.items():
        setattr(node, key, value)
    return node
