"""Entry script: count the words of every file in the mini-batch.

The same init() / run(mini_batch) / shutdown() contract as Azure ML's parallel job.
"""

import argparse
import os

min_length = 0


def init() -> None:
    global min_length
    parser = argparse.ArgumentParser()
    parser.add_argument("--min_length", type=int, default=0)
    args, _unknown = parser.parse_known_args()  # the runtime's own flags stay in argv too
    min_length = args.min_length


def run(mini_batch: list[str]) -> list[str]:
    results: list[str] = []
    for path in mini_batch:
        with open(path, encoding="utf-8") as f:
            words = [w for w in f.read().split() if len(w) >= min_length]
        results.append(f"{os.path.basename(path)},{len(words)}")
    return results
