"""The ``azureml_user.parallel_run`` module as entry scripts see it in a worker.

``EntryScript()`` is a per-process singleton: every call returns an object with the same
logger, log folder, agent name and output folder (docs/contract.md §3.4). Its logger writes to
``logs/user/entry_script_log/<node>/processNNN.log.txt``; as on Azure, the root logger also
gets a handler at the step's level, writing to the worker's stdout log
(``logs/user/stdout/<node>/processNNN.stdout.txt``), so ``logging.info(...)`` in a script
lands there.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

_FORMAT = "%(asctime)s|%(levelname)s|%(process)d|%(name)s|%(message)s"


class EntryScript:
    _instance: ClassVar[EntryScript | None] = None
    # Filled in by the worker before it imports the entry script.
    _config: ClassVar[dict[str, Any]] = {}

    def __new__(cls) -> EntryScript:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @classmethod
    def configure(
        cls, *, agent_name: str, log_dir: Path, log_file: Path, output_dir: Path, logging_level: str
    ) -> None:
        cls._instance = None
        cls._config = {
            "agent_name": agent_name,
            "log_dir": log_dir,
            "log_file": log_file,
            "output_dir": output_dir,
            "logging_level": logging_level,
        }
        root = logging.getLogger()
        if not any(getattr(h, "_parajob", False) for h in root.handlers):
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter(_FORMAT))
            handler._parajob = True  # type: ignore[attr-defined]
            root.addHandler(handler)
        root.setLevel(logging_level)

    @property
    def agent_name(self) -> str:
        return str(self._config.get("agent_name", "process000"))

    @property
    def log_dir(self) -> str:
        return str(self._config.get("log_dir", "."))

    @property
    def output_dir(self) -> str:
        return str(self._config.get("output_dir", "."))

    @property
    def working_dir(self) -> str:
        """The worker's private working folder (its current directory)."""
        import os

        return os.getcwd()

    @property
    def logger(self) -> logging.Logger:
        logger = logging.getLogger(f"parajob.entry_script.{self.agent_name}")
        if not logger.handlers and "log_file" in self._config:
            log_file = Path(self._config["log_file"])
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter(_FORMAT))
            logger.addHandler(handler)
            logger.setLevel(self._config.get("logging_level", "INFO"))
            logger.propagate = False
        return logger
