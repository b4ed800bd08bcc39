"""The pass/fail rule of `--check` (export and convert): onnxruntime on the CPU against the PyTorch references.

Logits: max|ort - ref| / max|ref| over the prefill logits must be within the tolerance of the graph's
precision. Greedy tokens: every step must agree, except where PyTorch's own margin between its best and
second-best logit at that step is within the logits' error bound (2 x tolerance x max|ref|): there the
two runs may legitimately pick different tokens, and from that step on their sequences are different
continuations, so the comparison stops there (and says so).

Tolerances (relative to max|ref|; why):
  fp32                          1e-4   float reassociation only (ORT's kernels sum in another order)
  fp16                          2e-2   fp16 weights, activations and cache: 11-bit mantissa (unit roundoff 4.9e-4),
                                       compounded over every layer and the vocabulary projection; measured up to
                                       1.2e-2 on the proof checkpoints with every greedy token equal, so 2e-2 leaves
                                       room while one damaged weight gives errors of order 1 (selftest_check)
  int4, own round-trip reference 1e-4 at accuracy_level <= 1 with fp32 activations (exact dequantized
                                       weights, fp32 compute); 2e-2 with fp16 activations (as fp16); 3e-2 at accuracy_level
                                       >= 2 (MatMulNBits quantizes activations to int8 / computes in fp16 or bf16)
  int4 converted by `convert`   as the round trip above: reference/roundtrip.json, written by convert
                                       (roundtrip.py), is the fp32 graph with dequantize(quantize(w)) weights
  int4 against an fp32 source   0.25   only where no round trip exists (older packages): the weights' own int4
                                       error; the token rule then only holds where PyTorch's margin is wide
"""
from __future__ import annotations

import sys

TOLERANCES = {"fp32": 1e-4, "fp16": 2e-2, "int4_exact": 1e-4, "int4_fp16": 2e-2, "int4_low_accuracy": 3e-2,
              "int4_vs_source": 0.25}


class CheckFailed(SystemExit):
    """`--check` found the graph outside its tolerance: exits 1 with every failure named."""

    def __init__(self, package: str, failures: list[str]):
        lines = "\n  ".join(failures)
        super().__init__(f"omm_export --check FAILED for {package}:\n  {lines}")
        self.failures = failures


def tolerance(manifest: dict, reference: dict) -> tuple[float, str]:
    """(relative logits tolerance, why) for the package's graph against its reference/ folder."""
    precision = manifest.get("precision", "fp32")
    fp16_act = manifest.get("decoder", {}).get("kv_dtype") == "float16"
    if precision == "fp32" and not fp16_act:
        return TOLERANCES["fp32"], "fp32"
    if precision in ("fp32", "fp16"):
        return TOLERANCES["fp16"], "fp16"
    if precision != "int4":
        raise SystemExit(f"omm_export --check: no tolerance for precision '{precision}'")
    if "quantized_reference" not in reference:
        return TOLERANCES["int4_vs_source"], "int4 against the fp32 source model"
    level = int((manifest.get("quantization") or {}).get("accuracy_level", 0))
    if level >= 2:
        return TOLERANCES["int4_low_accuracy"], f"int4 (own round trip), accuracy_level {level}"
    if fp16_act:
        return TOLERANCES["int4_fp16"], "int4 (own round trip), fp16 activations"
    return TOLERANCES["int4_exact"], f"int4 (own round trip), accuracy_level {level}, fp32 activations"


def compare_tokens(got: list[int], want: list[int], margins, bound: float) -> tuple[bool, str]:
    """The token rule above. `margins`: PyTorch's margin per step, or one number (the minimum) for
    references written before per-step margins were recorded."""
    if len(got) < len(want):
        return False, f"ran {len(got)} of {len(want)} steps"
    for i, (a, b) in enumerate(zip(got, want)):
        if a == b:
            continue
        m = margins[i] if isinstance(margins, (list, tuple)) else margins
        if m is not None and m <= bound:
            return True, f"forked at step {i} on a near tie (PyTorch margin {m:.3g} <= bound {bound:.3g}); {i} steps equal"
        return False, (f"greedy token {i} is {a}, PyTorch's is {b} (PyTorch margin "
                       f"{'unknown' if m is None else f'{m:.3g}'} > bound {bound:.3g}); {i} of {len(want)} steps equal")
    return True, f"{len(want)} of {len(want)} steps equal"


def judge_prompt(label: str, rel: float | None, tol: float, why: str, got: list[int], want: list[int],
                 margins, scale: float, failures: list[str]) -> dict:
    """Appends this prompt's failures (naming it and by how much) and returns its figures."""
    row = {"prompt": label, "tolerance": tol, "precision_rule": why}
    if rel is not None:
        row["logits_rel_err"] = rel
        if not rel <= tol:   # NaN fails too
            failures.append(f"prompt {label!r}: logits relative error {rel:.3g} > tolerance {tol:g} ({why})")
    ok, note = compare_tokens(got, want, margins, 2.0 * tol * scale)
    row.update(greedy_agree=sum(a == b for a, b in zip(got, want)), of=len(want), tokens=note, passed=ok and (rel is None or rel <= tol))
    if not ok:
        failures.append(f"prompt {label!r}: {note} ({why}, tolerance {tol:g})")
    return row


def finish(package: str, figures: dict, failures: list[str]) -> dict:
    """Prints nothing; raises CheckFailed when anything failed, else returns the figures marked passed."""
    figures["failures"] = failures
    figures["passed"] = not failures
    if failures:
        import json
        print(json.dumps(figures, indent=1, default=str), file=sys.stderr)
        raise CheckFailed(package, failures)
    return figures
