"""Scores iris rows: a DataFrame per mini-batch (tabular input: the MLTable reads the CSV)."""
import argparse
import os

import pandas as pd
from azureml_user.parallel_run import EntryScript


def init():
    global rule, model_dir
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model", type=str)
    args, _ = parser.parse_known_args()
    model_dir = args.model
    with open(os.path.join(model_dir, "model.txt")) as f:
        rule = f.read().strip()
    EntryScript().logger.info("model from %s: %s", model_dir, rule)


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    data = mini_batch.copy()
    data["prediction"] = ["setosa" if p < 2.45 else "versicolor-or-virginica"
                          for p in data["petal_length"]]
    data["model_dir"] = model_dir
    return data
