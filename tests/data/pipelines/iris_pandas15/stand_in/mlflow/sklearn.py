"""``load_model(folder)``: a one-feature threshold rule read from ``folder/rule.json``,
with a scikit-learn style ``predict(X)`` (a 1-D numpy array of labels, dtype object, as
a classifier trained on string labels gives)."""

import json
import os

import numpy as np


class ThresholdModel:
    def __init__(self, column, threshold, below, above):
        self.column, self.threshold, self.below, self.above = column, threshold, below, above

    def predict(self, features):
        values = np.asarray(features)[:, self.column]
        return np.where(values < self.threshold, self.below, self.above).astype(object)


def load_model(model_uri):
    with open(os.path.join(model_uri, "rule.json"), encoding="utf-8") as f:
        return ThresholdModel(**json.load(f))
