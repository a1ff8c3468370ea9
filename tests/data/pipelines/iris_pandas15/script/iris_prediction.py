"""Scores iris rows with an MLflow scikit-learn model (tabular input: one DataFrame per
mini-batch). The run() of Azure's public iris batch-prediction example, in this project's
words (see ../README.md): the same pandas calls, so the same pandas-1.5-only assignment."""

import argparse

from mlflow.sklearn import load_model


def init():
    global iris_model
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model", type=str, default=0)
    args, _ = parser.parse_known_args()
    iris_model = load_model(args.model)


def run(input_data):
    num_rows, num_cols = input_data.shape
    # the model predicts from the four measurements; its 1-D answer made a column vector
    pred = iris_model.predict(input_data.iloc[:, :4]).reshape((num_rows, 1))
    # keep the measurements only, then add the prediction: a (rows, 1) array of strings
    # assigned to one column works on pandas 1.5; pandas 2 and 3 raise ValueError
    result = input_data.drop(input_data.columns[4:], axis=1)
    result["variety"] = pred
    return result
