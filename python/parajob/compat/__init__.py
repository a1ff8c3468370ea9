"""Compatibility with entry scripts written for Azure ML's parallel job."""

from __future__ import annotations

import sys
import types

from parajob.compat import parallel_run


def install_azureml_user_shim() -> None:
    """Make ``from azureml_user.parallel_run import EntryScript`` work in this process.

    Registered in sys.modules (only in workers) rather than shipped as a top-level
    ``azureml_user`` package, so parajob never shadows a real installation of it.
    """
    if "azureml_user.parallel_run" in sys.modules:
        return
    package = types.ModuleType("azureml_user")
    package.__path__ = []  # a namespace-like package: submodules come from sys.modules
    package.parallel_run = parallel_run  # type: ignore[attr-defined]
    sys.modules.setdefault("azureml_user", package)
    sys.modules["azureml_user.parallel_run"] = parallel_run
