"""The ``azureml_user.parallel_run`` module as entry scripts see it in a worker.

``EntryScript()`` is a per-process singleton: every call returns an object with the same
logger, log folder, agent name and output folder (SPEC §3).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar


class EntryScript:
    _instance: ClassVar[EntryScript | None] = None
    # Filled in by the worker before it imports the entry script.
    _config: ClassVar[dict[str, Any]] = {}

    def __new__(cls) -> EntryScript:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @classmethod
    def configure(cls, *, agent_name: str, log_dir: Path, log_file: Path, output_dir: Path,
                  logging_level: str) -> None:
        cls._instance = None
        cls._config = {
            "agent_name": agent_name, "log_dir": log_dir, "log_file": log_file,
            "output_dir": output_dir, "logging_level": logging_level,
        }

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
    def logger(self) -> logging.Logger:
        logger = logging.getLogger(f"parajob.entry_script.{self.agent_name}")
        if not logger.handlers and "log_file" in self._config:
            log_file = Path(self._config["log_file"])
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(log_file, encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("%(asctime)s|%(levelname)s|%(process)d|%(message)s")
            )
            logger.addHandler(handler)
            logger.setLevel(self._config.get("logging_level", "INFO"))
            logger.propagate = False
        return logger
