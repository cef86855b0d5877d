import numpy as np


def flatten_rows(x):
    return x.reshape(x.shape[0], -1)
