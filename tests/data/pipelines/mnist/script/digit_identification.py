"""Reads each 'image' and returns one line per file (the public example runs a model)."""
import argparse
import os

from azureml_user.parallel_run import EntryScript


def init():
    global model
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model")
    args, _ = parser.parse_known_args()
    with open(os.path.join(args.model, "m.txt")) as f:
        model = f.read().strip()


def run(mini_batch):
    example = os.environ.get("AZUREML_PARALLEL_EXAMPLE")
    agent = EntryScript().agent_name
    out = []
    for path in mini_batch:
        with open(path) as f:
            out.append(f"{os.path.basename(path)} {f.read()} {model} {example} {agent}")
    return out
