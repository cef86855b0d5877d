import numpy as np


def cubed(x):
    return x ** 3
