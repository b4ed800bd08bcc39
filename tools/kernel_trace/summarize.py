#!/usr/bin/env python3
"""Per-kernel GPU time from kernel_trace TSVs (tools/kernel_trace/kernel_trace.cc); standard library only.

Per trace: kernels by total time, then the int4 GEMV launches by Llama-7B projection, recognised from the grid
(ours: grid.x = ceil(ceil(N/rows) / (4/split)) for int4_gemv_kernel<M, rows, unroll, split>; MatMulNBits:
N = grid.x * block.y (* CtaN), grid.y = M (/ CtaM)); o and down (both N = 4096) by the projection launched before
them on the stream. GB/s = (N*K/2 + 2*N*K/block_size) bytes / median. With several traces, their decode (M = 1)
GEMV medians side by side; then JSON (--json FILE, else stdout). --per-step auto = M = 1 lm_head launches;
--decode-only drops each prompt pass (first to last M > 1 GEMV or dequantize kernel).
"""
import argparse
import gzip
import json
import re
import sys

SHAPES = [("qkv", 12288, 4096), ("o", 4096, 4096), ("gate_up", 22016, 4096), ("down", 4096, 11008), ("lm_head", 32016, 4096)]
INT_COLS = ("start_ns", "end_ns", "duration_ns", "grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "stream",
            "graph_id", "graph_node_id", "bytes")


class Rec:
    __slots__ = ("start", "end", "dur", "name", "grid", "block", "stream", "graph", "kind", "bytes", "short", "gemv")

    def __init__(self, f, names):
        self.start, self.end, self.dur = f["start_ns"], f["end_ns"], f["duration_ns"]
        self.name = names.setdefault(f["name"], f["name"])
        self.grid = (f["grid_x"], f["grid_y"], f["grid_z"])
        self.block = (f["block_x"], f["block_y"], f["block_z"])
        self.stream, self.graph, self.kind, self.bytes = f["stream"], f["graph_id"], f.get("kind", "kernel"), f["bytes"]
        self.short = self.gemv = None


def read_trace(path):
    """(records, metadata lines, malformed line count) of one TSV (.gz read as gzip; - = stdin)."""
    stream = sys.stdin if path == "-" else gzip.open(path, "rt", errors="replace") if path.endswith(".gz") else open(path, errors="replace")
    cols, meta, recs, bad, names = None, [], [], 0, {}
    with stream:
        for line in stream:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#"):
                if line.startswith("#start_ns"):
                    cols = line[1:].split("\t")
                else:
                    meta.append(line[1:].strip())
                continue
            parts = line.split("\t")
            if cols is None or len(parts) != len(cols):
                bad += 1
                continue
            f = dict(zip(cols, parts))
            try:
                for c in INT_COLS:
                    f[c] = int(f.get(c) or 0)
            except ValueError:
                bad += 1
                continue
            recs.append(Rec(f, names))
    if cols is None:
        raise SystemExit(f"{path}: no column line (#start_ns ...): not a kernel_trace file")
    recs.sort(key=lambda r: r.start)
    return recs, meta, bad


def _top_level(s, stop):
    """Indices in s of the characters in stop that lie outside <> and ()."""
    depth, out = 0, []
    for i, c in enumerate(s):
        if c in "<(":
            depth += 1
        elif c in ">)":
            depth = max(0, depth - 1)
        elif depth == 0 and c in stop:
            out.append(i)
    return out


def short_name(name, width=300):
    """'void ns::(anonymous namespace)::k<1, 4>(int, float*)' -> 'k<1, 4>'; mangled names of our kernel decoded."""
    if name.startswith("["):
        return name
    if name.startswith("_Z"):
        m = re.search(r"int4_gemv_kernelILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)E", name)
        return "int4_gemv_kernel<%s, %s, %s, %s>" % m.groups() if m else name[:width]
    s = name.strip()
    if s.endswith(")"):                       # the parameter list: the last top-level (...)
        depth = 0
        for i in range(len(s) - 1, -1, -1):
            depth += s[i] == ")"
            depth -= s[i] == "("
            if depth == 0:
                s = s[:i]
                break
    spaces = _top_level(s, " ")
    if spaces:                                # a return type ("void ")
        s = s[spaces[-1] + 1:]
    colons = [i for i in _top_level(s, ":") if i + 1 < len(s) and s[i + 1] == ":"]
    if colons:
        s = s[colons[-1] + 2:]
    return s if len(s) <= width else s[:width - 3] + "..."


def template(short):
    """('base', [args]) of 'base<a, b>'."""
    if "<" not in short or not short.endswith(">"):
        return short, []
    i = short.index("<")
    inner = short[i + 1:-1]
    cuts = [-1] + _top_level(inner, ",") + [len(inner)]
    return short[:i], [inner[a + 1:b].strip() for a, b in zip(cuts, cuts[1:])]


def _int(s):
    try:
        return int(s.rstrip("uUlL"))
    except ValueError:
        return None


def gemv_info(r):
    """The int4 GEMV reading of a kernel launch: impl, variant, M range, N range, block size; None if not one."""
    base, args = template(r.short)
    (gx, gy, _), (bx, by, _) = r.grid, r.block
    a = [_int(x) for x in args]
    # int4_gemv_kernel<M, rows, unroll, split> or <M, rows, unroll, split, mode> (a fused mode flag after the tile)
    if base == "int4_gemv_kernel" and len(a) in (4, 5) and None not in a[:4] and a[3] > 0:
        m, rows, unroll, split = a[:4]
        mode = "" if len(args) == 4 or args[4] in ("false", "0") else {"true": "+silu_mul", "1": "+silu_mul", "2": "+swiglu"}.get(args[4], "+" + args[4])
        per = max(1, (bx // 32) // split) * rows
        return dict(impl="omm int4_gemv", variant=f"{rows}x{unroll}/{split}{mode}", m=(m, m), n=((gx - 1) * per + 1, gx * per), bs=None)
    if base in ("MatMulFloatInt4Kernel", "MatMulFloat4BitsKernelM1") and len(a) >= 2:
        m = (gy, gy) if base == "MatMulFloatInt4Kernel" else (1, 1)
        return dict(impl=base, variant="", m=m, n=(gx * by, gx * by), bs=a[1])
    if base in ("MatMulFloatInt4KernelSmallM", "MatMulFloat4BatchedKernel") and len(a) >= 4 and a[3]:
        cta_n = a[4] if base == "MatMulFloat4BatchedKernel" and len(a) >= 5 and a[4] else 1
        # launched for 2 <= M only
        return dict(impl=base, variant=f"CtaM {a[3]}", m=(max(2, (gy - 1) * a[3] + 1), gy * a[3]), n=(gx * by * cta_n,) * 2, bs=a[1])
    if "Dequantiz" in base:                   # MatMulNBits' prompt path: dequantize, then a cuBLAS GEMM
        return dict(impl=base, variant="", m=(2, 1 << 30), n=None, bs=None, prefill=True)
    return None


def label_gemvs(recs, shapes):
    """Sets r.gemv (with 'shape') for every GEMV launch, in time order per stream."""
    last = {}
    for r in recs:
        if r.kind != "kernel":
            continue
        r.short = short_name(r.name)
        g = gemv_info(r)
        if g is None:
            continue
        r.gemv = g
        if g["n"] is None:
            g["shape"] = "prefill"
            continue
        lo, hi = g["n"]
        cands = [s for s in shapes if lo <= s[1] <= hi] or [s for s in shapes if abs(s[1] - (lo + hi) / 2) <= 0.01 * s[1]]
        names = {s[0] for s in cands}
        if names == {"o", "down"}:
            p = last.get(r.stream)
            shape = "o" if p in ("qkv", "o") else "down" if p in ("gate_up", "down") else "o|down"
        elif len(names) == 1:
            shape = names.pop()
        else:
            shape = f"N={hi}"
        g["shape"] = shape
        if shape in {s[0] for s in shapes}:
            last[r.stream] = shape


def prefill_windows(recs):
    """[start, end] of each prompt's forward pass: runs of M > 1 GEMV launches with no M = 1 launch between."""
    windows, cur = [], None
    for r in recs:
        if r.gemv is None:
            continue
        if r.gemv["m"][0] > 1:
            cur = [r.start, r.end] if cur is None else [cur[0], max(cur[1], r.end)]
        elif cur is not None:
            windows.append(cur)
            cur = None
    if cur is not None:
        windows.append(cur)
    return windows


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    x = (len(sorted_vals) - 1) * q
    i = int(x)
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (x - i)


def busy_ns(recs):
    total, end = 0, None
    for r in recs:                            # sorted by start
        if end is None or r.start > end:
            total += r.end - r.start
            end = r.end
        elif r.end > end:
            total += r.end - end
            end = r.end
    return total


def summarize(path, args, shapes):
    recs, meta, bad = read_trace(path)
    recs = [r for r in recs if r.dur > 0 and r.end >= r.start]
    if recs and args.skip_first_seconds:
        t0 = recs[0].start + int(args.skip_first_seconds * 1e9)
        recs = [r for r in recs if r.start >= t0]
    if args.window:
        recs = [r for r in recs if args.window[0] <= r.start <= args.window[1]]
    label_gemvs(recs, shapes)
    dropped_prefill = 0
    if args.decode_only:
        wins = prefill_windows(recs)
        keep = [r for r in recs if not any(w[0] <= r.start <= w[1] for w in wins)]
        dropped_prefill, recs = len(recs) - len(keep), keep
    kernels = [r for r in recs if r.kind == "kernel"]
    lm_steps = sum(1 for r in kernels if r.gemv and r.gemv.get("shape") == "lm_head" and r.gemv["m"] == (1, 1))
    steps = lm_steps if args.per_step == "auto" else int(args.per_step)
    steps = steps or None
    k_ns = sum(r.dur for r in kernels)
    per = (lambda ns: round(ns / steps / 1e3, 2)) if steps else (lambda ns: None)
    groups = {}
    for r in kernels:
        groups.setdefault(r.short, []).append(r.dur)
    table = []
    for name, d in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        d.sort()
        table.append(dict(name=name, count=len(d), total_ms=round(sum(d) / 1e6, 3), median_us=round(pct(d, 0.5) / 1e3, 2),
                          per_step_us=per(sum(d)), share=round(sum(d) / k_ns, 4) if k_ns else None))
    gg = {}
    for r in kernels:
        if r.gemv:
            g = r.gemv
            gg.setdefault((g["impl"], g["variant"], g["shape"], g["m"][1], g["bs"], g["m"][0]), []).append(r.dur)
    dims = {s[0]: (s[1], s[2]) for s in shapes}
    gemv, gemv_ns = [], 0
    order = [s[0] for s in shapes]
    for (impl, variant, shape, m, kbs, m_min), d in sorted(gg.items(), key=lambda kv: (kv[0][3], order.index(kv[0][2]) if kv[0][2] in order
                                                                                  else len(order), kv[0][2], kv[0][0])):
        d.sort()
        gemv_ns += sum(d)
        n, k = dims.get(shape, (None, None))
        bs = kbs or args.block_size
        med = pct(d, 0.5)
        wbytes = n * k // 2 + 2 * n * (k // bs) if n and bs else None
        m = None if m >= 1 << 30 else m       # a dequantize kernel: some M > 1
        gemv.append(dict(impl=impl, variant=variant, shape=shape, m=m, m_min=m_min, n=n, k=k, block_size=bs, count=len(d),
                         median_us=round(med / 1e3, 2), p10_us=round(pct(d, 0.1) / 1e3, 2), p90_us=round(pct(d, 0.9) / 1e3, 2),
                         per_step_us=per(sum(d)), gb_s=round(wbytes / med, 1) if wbytes else None))
    copies = {}
    for r in recs:
        if r.kind != "kernel":
            c = copies.setdefault(r.name, [0, 0, 0])
            c[0] += 1
            c[1] += r.dur
            c[2] += r.bytes
    span = (recs[-1].end - recs[0].start) if recs else 0
    busy = busy_ns(kernels)
    return dict(
        file=path, meta=meta, malformed_lines=bad, records=dict(kernel=len(kernels), other=len(recs) - len(kernels)),
        dropped_as_prefill=dropped_prefill, span_ms=round(span / 1e6, 3), kernel_ms=round(k_ns / 1e6, 3),
        gpu_busy_ms=round(busy / 1e6, 3), gpu_busy_share=round(busy / span, 4) if span else None,
        graph_kernels=sum(1 for r in kernels if r.graph), steps=dict(used=steps, source=args.per_step, lm_head_m1_launches=lm_steps),
        per_step_us=dict(kernels=per(k_ns), gemv=per(gemv_ns), other_kernels=per(k_ns - gemv_ns), busy=per(busy)),
        kernels=table[:args.top], kernel_names=len(table), gemv=gemv,
        copies=[dict(name=n, count=c[0], total_ms=round(c[1] / 1e6, 3), bytes=c[2]) for n, c in sorted(copies.items())])


def fmt(v, spec):
    """v formatted with spec, or '-' in the same width."""
    return format(v, spec) if v is not None else "-".rjust(int(re.match(r"[<>]?(\d*)", spec).group(1) or 0))


def print_report(s, label, out):
    p = s["per_step_us"]
    out.write(f"== {label}: {s['file']}\n")
    out.write(f"{s['records']['kernel']} kernels ({s['graph_kernels']} from CUDA graphs), {s['records']['other']} copies/sets; "
              f"span {s['span_ms']} ms, kernel time {s['kernel_ms']} ms, GPU busy {s['gpu_busy_ms']} ms"
              f" ({fmt(s['gpu_busy_share'], '.1%')}); steps {s['steps']['used']} ({s['steps']['source']}; "
              f"{s['steps']['lm_head_m1_launches']} M=1 lm_head launches)"
              + (f"; {s['dropped_as_prefill']} prompt-pass records dropped" if s["dropped_as_prefill"] else "") + "\n")
    if s["steps"]["used"]:
        out.write(f"per step: kernels {p['kernels']} us, GEMV {p['gemv']} us, other kernels {p['other_kernels']} us, busy {p['busy']} us\n")
    out.write(f"\n{'kernel':60} {'count':>7} {'total ms':>10} {'median us':>10} {'us/step':>9} {'share':>6}\n")
    for k in s["kernels"]:
        out.write(f"{k['name'][:60]:60} {k['count']:7d} {k['total_ms']:10.3f} {k['median_us']:10.2f} {fmt(k['per_step_us'], '9.2f')} "
                  f"{fmt(k['share'], '6.1%')}\n")
    if s["kernel_names"] > len(s["kernels"]):
        out.write(f"({s['kernel_names'] - len(s['kernels'])} more kernel names in the JSON's counts only)\n")
    if s["gemv"]:
        out.write(f"\n{'GEMV':28} {'tile':9} {'shape':8} {'M':>5} {'N':>6} {'K':>6} {'bs':>4} {'count':>6} {'median us':>10} "
                  f"{'p10':>8} {'p90':>8} {'us/step':>9} {'GB/s':>7}\n")
        for g in s["gemv"]:
            mm = ">1" if g["m"] is None else str(g["m"]) if g["m_min"] == g["m"] else f"{g['m_min']}-{g['m']}"
            out.write(f"{g['impl'][:28]:28} {g['variant']:9} {g['shape']:8} {mm:>5} {fmt(g['n'], '6d')} {fmt(g['k'], '6d')} "
                      f"{fmt(g['block_size'], '4d')} {g['count']:6d} {g['median_us']:10.2f} {g['p10_us']:8.2f} {g['p90_us']:8.2f} "
                      f"{fmt(g['per_step_us'], '9.2f')} {fmt(g['gb_s'], '7.1f')}\n")
    for c in s["copies"]:
        out.write(f"{c['name']}: {c['count']} x, {c['total_ms']} ms, {c['bytes']} bytes\n")
    out.write("\n")


def comparison(summaries, labels, shapes):
    """Decode (M = 1) GEMV medians per shape, side by side; and the per-step totals."""
    rows = []
    for shape in [s[0] for s in shapes] + ["o|down"]:
        row = dict(shape=shape)
        for s, lab in zip(summaries, labels):
            g = [x for x in s["gemv"] if x["shape"] == shape and x["m"] == 1]
            if g:
                best = max(g, key=lambda x: x["count"])
                row[lab] = dict(impl=best["impl"], median_us=best["median_us"], gb_s=best["gb_s"], count=best["count"])
        if len(row) > 1:
            rows.append(row)
    totals = {lab: s["per_step_us"] for s, lab in zip(summaries, labels)}
    return dict(gemv_m1=rows, per_step_us=totals)


def print_comparison(c, labels, out):
    out.write("== decode GEMV (M = 1), median us (GB/s)\n" + f"{'shape':22}" + "".join(f" {lab[:24]:>24}" for lab in labels) + "\n")
    for row in c["gemv_m1"]:
        cells = [f"{row[lab]['median_us']:.2f} ({fmt(row[lab]['gb_s'], '.0f')})" if lab in row else "-" for lab in labels]
        out.write(f"{row['shape']:22}" + "".join(f" {x:>24}" for x in cells) + "\n")
    for key in ("kernels", "gemv", "other_kernels", "busy"):
        out.write(f"{key + ' us/step':22}" + "".join(f" {fmt(c['per_step_us'][lab][key], '>24')}" for lab in labels) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", help="kernel_trace TSV files (.gz allowed)")
    ap.add_argument("--labels", help="comma-separated names of the traces (default: the file names)")
    ap.add_argument("--per-step", default="auto", help="divide totals by this many decode steps, or 'auto' (M=1 lm_head launches)")
    ap.add_argument("--block-size", type=int, help="int4 block size, for GB/s of kernels that do not name it (ours)")
    ap.add_argument("--vocab", type=int, default=32016, help="lm_head N (the 7b preset's vocabulary: 32016)")
    ap.add_argument("--decode-only", action="store_true", help="drop each prompt's forward pass")
    ap.add_argument("--skip-first-seconds", type=float, default=0.0, help="drop records starting within S s of the first")
    ap.add_argument("--window", type=int, nargs=2, metavar=("START_NS", "END_NS"), help="keep records starting in this range")
    ap.add_argument("--top", type=int, default=30, help="kernel names in the table and JSON")
    ap.add_argument("--json", help="write the JSON summary here instead of printing it")
    args = ap.parse_args(argv)
    if args.per_step != "auto" and not args.per_step.isdigit():
        ap.error("--per-step takes a whole number or 'auto'")
    if args.block_size is not None and (args.block_size < 2 or args.block_size & (args.block_size - 1)):
        ap.error("--block-size must be a power of two")
    shapes = [s if s[0] != "lm_head" else ("lm_head", args.vocab, s[2]) for s in SHAPES]
    labels = args.labels.split(",") if args.labels else [p.rsplit("/", 1)[-1] for p in args.traces]
    if len(labels) != len(args.traces):
        ap.error(f"{len(labels)} labels for {len(args.traces)} traces")
    summaries = [summarize(p, args, shapes) for p in args.traces]
    for s, lab in zip(summaries, labels):
        s["label"] = lab
        print_report(s, lab, sys.stdout)
    doc = dict(traces=summaries)
    if len(summaries) > 1:
        doc["comparison"] = comparison(summaries, labels, shapes)
        print_comparison(doc["comparison"], labels, sys.stdout)
    text = json.dumps(doc, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
