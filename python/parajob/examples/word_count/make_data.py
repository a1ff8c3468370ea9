"""Regenerate the example's input: 300 small text files in data/ (deterministic)."""

import random
from pathlib import Path

WORDS = (
    "parallel job mini batch worker retry output table folder score model row file "
    "process driver queue shared memory watchdog"
).split()

rng = random.Random(42)
data = Path(__file__).parent / "data"
data.mkdir(exist_ok=True)
for i in range(300):
    words = rng.choices(WORDS, k=rng.randint(3, 40))
    (data / f"doc_{i:04d}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
