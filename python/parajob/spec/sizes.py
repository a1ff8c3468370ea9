"""``mini_batch_size``: a file count, or an approximate byte size for tables.

Azure's SDK (``azure-ai-ml``) turns the value into one integer: a plain number stays as it
is, ``kb``/``mb``/``gb`` (any case) multiply by 1024, 1024², 1024³. It checks the text with
``^\\d+([kKmMgG][bB])*$``, whose ``*`` lets ``"1kbkb"`` through to a later crash; we use
``?`` and reject it here (docs/contract.md §2.2). ``"10 kb"`` and ``"1b"`` are
rejected too, although the service's docs write "100 kb".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FILES_PER_BATCH",
    "DEFAULT_BYTES_PER_BATCH",
    "MiniBatchSize",
    "parse_mini_batch_size",
]

# When the step gives no mini_batch_size (docs/contract.md §10.1: v1 client and SDK
# docstrings; the v2 YAML reference says 1).
DEFAULT_FILES_PER_BATCH = 10
DEFAULT_BYTES_PER_BATCH = 1024 * 1024

# [0-9], not \d (which takes other scripts' digits); fullmatch, as "$" allows a final "\n".
_PATTERN = re.compile(r"([0-9]+)([kKmMgG][bB])?")
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}
# The core counts files and bytes in 64-bit integers; a larger value used to reach it and
# fail there with a TypeError traceback (issue 8). Any value past the input's size is one
# mini-batch anyway.
MAX_MINI_BATCH_SIZE = 2**63 - 1


@dataclass(frozen=True)
class MiniBatchSize:
    """A parsed ``mini_batch_size``.

    Exactly one of ``count`` (no unit: a number of files, or of bytes for tables, as in
    Azure) and ``bytes`` (a ``kb``/``mb``/``gb`` unit was given) is set.
    """

    raw: str
    count: int | None
    bytes: int | None

    def for_files(self) -> int:
        """Files per mini-batch. A value with a unit counts files too, as Azure does."""
        return self.count if self.count is not None else int(self.bytes or 0)

    def for_tables(self) -> int:
        """Approximate bytes of source data per mini-batch (a bare number is bytes)."""
        return self.bytes if self.bytes is not None else int(self.count or 0)


def parse_mini_batch_size(text: str | int) -> MiniBatchSize:
    """Parse ``10``, ``"10"``, ``"10kb"``, ``"1MB"``, ``"2gb"``; raise ValueError otherwise.

    The ValueError's message says what was expected and is shown to the user as is.
    """
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(f"expected a number or a size such as '10kb', found {text!r}")
    if isinstance(text, int):
        if text < 1:
            raise ValueError(f"expected a positive number, found {text}")
        _check_range(str(text), text)
        return MiniBatchSize(raw=str(text), count=text, bytes=None)
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a number of files or a size like '10kb', '1mb', '2gb' "
            f"(no space, units kb/mb/gb), found '{text}'"
        )
    number, unit = int(match.group(1)), match.group(2)
    if number < 1:
        raise ValueError(f"expected a positive size, found '{text}'")
    if unit is None:
        _check_range(text, number)
        return MiniBatchSize(raw=text, count=number, bytes=None)
    size = number * _UNITS[unit[0].lower()]
    _check_range(text, size)
    return MiniBatchSize(raw=text, count=None, bytes=size)


def _check_range(text: str, value: int) -> None:
    if value > MAX_MINI_BATCH_SIZE:
        raise ValueError(
            f"'{text}' is too large: at most {MAX_MINI_BATCH_SIZE} (2^63 - 1) "
            "files or bytes per mini-batch"
        )
