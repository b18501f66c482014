"""Fit y = sin(x) + noise with a polynomial, by plain gradient descent (no dependencies).

The entry point takes its config as a dataclass: expyrun builds and type-checks it.
It logs progress, writes metrics.json and checkpoint.json in the run folder, and returns
the final validation loss (stored in run.json as the run's result).
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass, field

log = logging.getLogger("toyreg")


@dataclass
class Data:
    n_samples: int = 200
    noise: float = 0.1
    seed: int = 0


@dataclass
class Model:
    degree: int = 3


@dataclass
class Optim:
    lr: float = 0.05
    epochs: int = 200
    log_every: int = 20


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)


def make_data(cfg: Data) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    rng = random.Random(cfg.seed)
    points = []
    for _ in range(cfg.n_samples):
        x = rng.uniform(-math.pi, math.pi)
        points.append((x / math.pi, math.sin(x) + rng.gauss(0.0, cfg.noise)))
    split = int(0.8 * len(points))
    return points[:split], points[split:]


def predict(weights: list[float], x: float) -> float:
    return sum(w * x**power for power, w in enumerate(weights))


def mse(weights: list[float], points: list[tuple[float, float]]) -> float:
    return sum((predict(weights, x) - y) ** 2 for x, y in points) / len(points)


def main(name: str, config: Config) -> float:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train, valid = make_data(config.data)
    weights = [0.0] * (config.model.degree + 1)
    log.info("run %s: %d train / %d valid points, degree %d", name, len(train), len(valid), config.model.degree)
    history = []
    for epoch in range(1, config.optim.epochs + 1):
        gradient = [0.0] * len(weights)
        for x, y in train:
            error = predict(weights, x) - y
            for power in range(len(weights)):
                gradient[power] += 2 * error * x**power / len(train)
        weights = [w - config.optim.lr * g for w, g in zip(weights, gradient, strict=True)]
        if epoch % config.optim.log_every == 0 or epoch == config.optim.epochs:
            losses = {"epoch": epoch, "train": mse(weights, train), "valid": mse(weights, valid)}
            history.append(losses)
            print(f"epoch {epoch:4d}  train {losses['train']:.4f}  valid {losses['valid']:.4f}", flush=True)
    with open("metrics.json", "w", encoding="utf-8") as handle:
        json.dump(history, handle, indent=2)
    with open("checkpoint.json", "w", encoding="utf-8") as handle:
        json.dump({"weights": weights}, handle)
    return history[-1]["valid"]
