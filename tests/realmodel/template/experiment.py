"""Fit y = 3x + 1 by gradient descent; writes out_dir/metrics.json with val_r2."""
import argparse
import json
import os
import random

HYPERPARAMETERS = {"lr": 0.05, "steps": 20, "points": 32, "bias": True}

parser = argparse.ArgumentParser()
parser.add_argument("--out_dir", required=True)
parser.add_argument("--config", required=True)
args = parser.parse_args()
config = json.load(open(args.config))
params = {**HYPERPARAMETERS, **config.get("params", {})}
rng = random.Random(config.get("seed", 0))
xs = [rng.uniform(-1, 1) for _ in range(int(params["points"]))]
ys = [3 * x + 1 + rng.gauss(0, 0.1) for x in xs]
w = b = 0.0
for step in range(int(params["steps"])):
    gw = sum(2 * (w * x + b - y) * x for x, y in zip(xs, ys)) / len(xs)
    gb = sum(2 * (w * x + b - y) for x, y in zip(xs, ys)) / len(xs)
    w -= params["lr"] * gw
    b -= params["lr"] * gb if params["bias"] else 0.0
    print(f"step {step}: w={w:.3f} b={b:.3f}")
mean = sum(ys) / len(ys)
r2 = 1 - sum((w * x + b - y) ** 2 for x, y in zip(xs, ys)) / sum((y - mean) ** 2 for y in ys)
os.makedirs(args.out_dir, exist_ok=True)
metrics = {"schema": "kubescientist.io/metrics/v1",
           "datasets": {"line": {"val_r2": {"final": r2, "direction": "maximize"}}}}
with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)
