"""Proves that `--check` can fail: `python -m omm_export.selftest_check [--work DIR]` (needs torch,
transformers, onnx, onnxruntime; about a minute on a CPU).

1. exports the tiny synthetic Llama with `--check` (must exit 0);
2. `omm_export check` on copies with one weight damaged must exit 1 and name a prompt: layer 1's
   down projection scaled by 1.05 (a logits error of a few 1e-3: inside what the old check printed and
   passed, outside fp32's 1e-4) and sign-flipped (tokens change too);
3. `convert --graph fused --precision fp16 --check` must exit 0, and the converted graph with the
   sign-flipped weight must fail the same check against the source's references.
Exits 0 only when every expectation held; prints one line per case.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omm_export", *args], capture_output=True, text=True)


def damage(package: str, initializer: str, factor: float) -> None:
    """Multiplies one weight of the package's decoder.onnx (inline weights) by `factor`, in place."""
    import onnx
    from onnx import numpy_helper
    path = os.path.join(package, "decoder.onnx")
    model = onnx.load(path)
    for i, t in enumerate(model.graph.initializer):
        if t.name == initializer:
            a = numpy_helper.to_array(t)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array((a.astype(np.float32) * factor).astype(a.dtype), t.name))
            onnx.save(model, path)
            return
    raise SystemExit(f"selftest_check: no initializer {initializer} in {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="omm_export.selftest_check")
    ap.add_argument("--work", help="scratch folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="omm-selftest-")
    os.makedirs(work, exist_ok=True)
    bad = []

    def expect(name: str, proc: subprocess.CompletedProcess, should_pass: bool, must_mention: str = "") -> None:
        ok = (proc.returncode == 0) == should_pass and (should_pass or ("prompt" in proc.stderr and must_mention in proc.stderr))
        tail = (proc.stderr.strip().splitlines() or [""])
        print(f"{'ok ' if ok else 'BAD'} {name}: exit {proc.returncode}" + ("" if should_pass else f"; {' | '.join(tail[-3:])}"))
        if not ok:
            bad.append(name)
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)

    ref = os.path.join(work, "tiny-ref")
    expect("export tiny llama --check", _run("llama", "--preset", "tiny", "--out", ref, "--check"), True)
    for label, factor in (("scaled 1.05", 1.05), ("sign-flipped", -1.0)):
        broken = os.path.join(work, f"broken-{factor}")
        shutil.copytree(ref, broken, dirs_exist_ok=True)
        damage(broken, "layers.1.down_proj", factor)
        expect(f"check reference graph, down_proj {label}", _run("check", broken), False, "logits relative error")
    fused = os.path.join(work, "tiny-fused-fp16")
    expect("convert fused fp16 --check", _run("convert", "--from", ref, "--out", fused, "--graph", "fused", "--precision", "fp16", "--check"), True)
    damage(fused, "layers.1.down_proj", -1.0)
    expect("check converted fp16 graph, down_proj sign-flipped", _run("check", fused), False, "fp16")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print("selftest_check:", "PASSED" if not bad else f"FAILED {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
