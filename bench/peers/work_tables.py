"""The work of the table workloads, called by parajob's entry scripts and every peer.

    score(df)       -> DataFrame(row_id, score)   one mini-batch / byte range / row groups
    fit(df)         -> one-row DataFrame(store, brand, rows, intercept, price, promo)
                       one (store, brand) group: least squares units ~ 1 + price + promo
    lines(df)       -> the DataFrame as parajob's append_row writes it (to_csv, sep " ")

The results depend only on values, not on dtypes: parajob gives run() mltable's dtypes
(promo of 0/1 is bool, date is datetime64), a peer's pandas.read_csv gives int64 and text;
both are cast to float64 here. Results are rounded (score to 4 decimals, fits to 6) so that a
last-digit difference in how two CSV readers parse a price cannot change a line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def score(df: pd.DataFrame) -> pd.DataFrame:
    price = df["price"].to_numpy(dtype=np.float64)
    promo = df["promo"].to_numpy(dtype=np.float64)
    units = df["units"].to_numpy(dtype=np.float64)
    store = df["store"].to_numpy(dtype=np.float64)
    value = np.log1p(price * units) * (1.0 + 0.15 * promo) + np.sqrt(store) / 10.0
    return pd.DataFrame({"row_id": df["row_id"].to_numpy(), "score": np.round(value, 4)})


def fit(df: pd.DataFrame) -> pd.DataFrame:
    price = df["price"].to_numpy(dtype=np.float64)
    promo = df["promo"].to_numpy(dtype=np.float64)
    x = np.column_stack([np.ones_like(price), price, promo])
    coef = np.linalg.lstsq(x, df["units"].to_numpy(dtype=np.float64), rcond=None)[0]
    return pd.DataFrame(
        {
            "store": [int(df["store"].iloc[0])],
            "brand": [str(df["brand"].iloc[0])],
            "rows": [len(df)],
            "intercept": [round(float(coef[0]), 6)],
            "price": [round(float(coef[1]), 6)],
            "promo": [round(float(coef[2]), 6)],
        }
    )


def lines(df: pd.DataFrame) -> str:
    """runtime/output.py's DEFAULT_CSV_OPTIONS: what parajob's append_row writes."""
    return df.to_csv(sep=" ", header=False, index=False)
