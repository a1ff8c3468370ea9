"""Where cloud locations are on this machine (docs/contract.md §1.3).

    azureml://datastores/<ds>/paths/<p>    -> <root of ds>/<p>
    <root of ds>                           -> --datastore ds=PATH, else <run>/datastores/<ds>
    ${{name}}                              -> the job's name: <run name>-<step> for a step's
                                              output, <run name> for the pipeline's
    ${{default_datastore}}                 -> settings.default_datastore, else workspaceblobstore
    ${{output_name}}                       -> the output's own name

``${{name}}`` is per step because on Azure every step is a job of its own with its own name,
so two steps writing ``paths/${{name}}/x.csv`` never collide; here the run folder's name
stands for the pipeline job's name. Without a run folder (``load_pipeline`` called without
``run_dir``) names and unmapped datastores are unknown: such paths stay None and the text
as written is kept on the Output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["Places", "DATASTORE_URI", "ASSET_URI", "OUTPUT_PATH_NAMES", "job_name"]

# The short form and the long one (azureml://subscriptions/.../datastores/<ds>/paths/<p>).
DATASTORE_URI = re.compile(r"azureml://(?:.*/)?datastores/([^/]+)/paths/?(.*)")
# Registered assets: azureml:<name>:<version>, azureml:<name>@latest, registries.
ASSET_URI = re.compile(r"azureml:(?!//)|azureml://registries/")
OUTPUT_PATH_NAMES = ("name", "default_datastore", "output_name")


def job_name(run_name: str, step: str | None) -> str:
    return f"{run_name}-{step}" if step else run_name


@dataclass(frozen=True)
class Places:
    """The run folder, the datastore folders, and the default datastore's name."""

    run_dir: Path | None = None
    datastores: Mapping[str, Path] = field(default_factory=dict)
    default_datastore: str = "workspaceblobstore"

    def datastore_root(self, name: str) -> Path | None:
        if name in self.datastores:
            return self.datastores[name]
        return self.run_dir / "datastores" / name if self.run_dir is not None else None

    def is_mapped(self, name: str) -> bool:
        return name in self.datastores

    def template_value(self, key: str, step: str | None, output: str) -> str | None:
        """The text of ``${{key}}`` in an output path; None when it is not known yet."""
        if key == "output_name":
            return output
        if key == "default_datastore":
            return self.default_datastore
        if key == "name":
            return job_name(self.run_dir.name, step) if self.run_dir is not None else None
        raise KeyError(key)

    def datastore_path(self, uri: str) -> tuple[str, Path | None] | None:
        """(datastore, local path) of an ``azureml://datastores/...`` URI; None if it is not
        one; the path is None when the datastore has no folder (no run folder, not mapped).
        Raises ValueError when the part after ``paths/`` climbs out of the datastore."""
        m = DATASTORE_URI.fullmatch(uri)
        if m is None:
            return None
        name, rest = m.group(1), m.group(2).strip("/")
        if ".." in PurePosixPath(rest).parts:
            raise ValueError(f"'{uri}' climbs out of datastore '{name}' with '..'")
        root = self.datastore_root(name)
        return name, (root / rest if rest else root) if root is not None else None
