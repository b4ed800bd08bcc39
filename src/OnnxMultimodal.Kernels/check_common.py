"""What the kernel check scripts (check_swiglu.py, check_qk_norm.py, check_group_norm.py) share: CUDA-event timing of a
call and the report every one ends with."""
import json
import sys

import torch


def cuda_us(fn, warmup: int, iters: int) -> float:
    """Mean µs of fn() on the current stream over `iters` calls after `warmup` (CUDA events, one sync at the end)."""
    for _ in range(warmup):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters):
        fn()
    e.record()
    torch.cuda.synchronize()
    return round(s.elapsed_time(e) / iters * 1000, 2)


def finish(path: str, summary: str, failures: list, **fields) -> None:
    """Prints the summary and the first failures, writes the JSON (the card, the failures, `fields`) and exits 1 on any
    failure."""
    print(summary)
    for f in failures[:20]:
        print("FAIL", f)
    with open(path, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), failures=failures, **fields), f, indent=1)
    sys.exit(1 if failures else 0)
