"""Shared helpers of the training scripts: seeding, a step budget calibrated to a wall-clock target,
bf16 autocast, a warmup-cosine schedule, JSON logging, the exporter CLI."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

SMOKE = os.environ.get("SMOKE") == "1"
HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT_ROOT = os.path.dirname(HERE)        # onnx-export/, where `python -m omm_export` runs


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast():
    dev = device()
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Budget:
    """Fixes the number of optimizer steps from the measured speed of the first `probe` steps, so a
    run lands near `seconds` of training; STEPS_<NAME> in the environment overrides it. The decision
    is logged, so a rerun with that STEPS_ value repeats the schedule exactly."""

    def __init__(self, name: str, seconds: float, max_steps: int, probe: int = 30, recheck: int | None = None):
        """recheck: measure again over steps probe+1..recheck and re-fix the total (for runs whose first steps
        are slower than the rest, e.g. new input shapes); None keeps the first decision."""
        self.name, self.seconds, self.max_steps, self.probe, self.recheck = name, seconds, max_steps, probe, recheck
        self.fixed = bool(os.environ.get(f"STEPS_{name.upper()}")) or SMOKE
        fixed = os.environ.get(f"STEPS_{name.upper()}")
        self.total = int(fixed) if fixed else (min(20, max_steps) if SMOKE else None)
        self.t0 = None
        self.hard_limit = seconds * 1.5 + 20

    def schedule_total(self) -> int:
        """Steps the schedule assumes before calibration (the probe steps use a short warmup only)."""
        return self.total or self.max_steps

    def after_step(self, step: int) -> bool:
        """Call after each step (1-based count); False when training should stop."""
        if step == 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t0 = time.time()                # step 1 carries compilation/warm-up: not measured
        if self.total is None and step == self.probe + 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            per = (time.time() - self.t0) / self.probe
            self.total = max(self.probe + 1, min(self.max_steps, int(self.seconds / per)))
            log(f"{self.name}: {per * 1000:.1f} ms/step -> {self.total} steps (set STEPS_{self.name.upper()}={self.total} to repeat)")
            self.t_probe = time.time()
        if not self.fixed and self.recheck and step == self.recheck + 1 and self.total > self.recheck:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            per = (time.time() - self.t_probe) / (self.recheck - self.probe)
            left = self.seconds - (time.time() - self.t0)
            self.total = max(step + 1, min(self.max_steps, step + int(left / per)))
            log(f"{self.name}: re-measured {per * 1000:.1f} ms/step over steps {self.probe + 1}-{self.recheck} -> {self.total} steps "
                f"(set STEPS_{self.name.upper()}={self.total} to repeat)")
        if self.t0 is not None and time.time() - self.t0 > self.hard_limit:
            log(f"{self.name}: hard time limit at step {step}")
            return False
        return step < (self.total or self.max_steps)


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    warmup = min(warmup, max(1, total // 10))
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def export(family: str, *args: str) -> None:
    """python -m omm_export <family> ... from onnx-export/ (the packaged CLI, as a user runs it)."""
    cmd = [sys.executable, "-m", "omm_export", family, *args]
    log("export: " + " ".join(cmd))
    subprocess.run(cmd, cwd=EXPORT_ROOT, check=True)


def write_json(path: str, doc) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def drop_chat_template(package: str) -> None:
    """A code model continues raw text: `omm run` must not wrap the prompt in the chat template."""
    p = os.path.join(package, "multimodal.json")
    with open(p) as f:
        m = json.load(f)
    m.pop("chat_template", None)
    with open(p, "w") as f:
        json.dump(m, f, indent=2)
