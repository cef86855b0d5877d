"""Initialisation schemes, drawn from one numpy Generator so every engine sees the same numbers."""

from __future__ import annotations

import math

import numpy as np

SCHEMES = ("normal", "uniform_fan_in", "xavier_uniform", "xavier_normal", "he_normal", "he_uniform", "zeros")


def draw(rng: np.random.Generator, scheme: str, shape, fan_in: int, fan_out: int, std: float = 0.1) -> np.ndarray:
    if scheme == "normal":
        return rng.normal(0.0, std, size=shape)
    if scheme == "uniform_fan_in":
        r = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-r, r, size=shape)
    if scheme == "xavier_uniform":
        r = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-r, r, size=shape)
    if scheme == "xavier_normal":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    if scheme == "he_normal":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    if scheme == "he_uniform":
        r = math.sqrt(6.0 / fan_in)
        return rng.uniform(-r, r, size=shape)
    if scheme == "zeros":
        return np.zeros(shape)
    raise ValueError(f"unknown init scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


def variance(scheme: str, fan_in: int, fan_out: int, std: float = 0.1) -> float:
    """Var[W] of a scheme: the input of the variance-propagation theory (Glorot 2010, He 2015)."""
    return {
        "normal": std**2,
        "uniform_fan_in": 1.0 / (3.0 * fan_in),
        "xavier_uniform": 2.0 / (fan_in + fan_out),
        "xavier_normal": 2.0 / (fan_in + fan_out),
        "he_normal": 2.0 / fan_in,
        "he_uniform": 2.0 / fan_in,
        "zeros": 0.0,
    }[scheme]
