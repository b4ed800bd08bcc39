"""Checks the GroupNorm kernel (group_norm.cu, through libomm_int4.so's C entry points) against GroupNorm computed in float64
by torch on the GPU machine, with and without the SiLU after it:

    python3 check_group_norm.py BUILD/libomm_int4.so OUT.json

Bound: 5e-5 * (1 + |y|) against the float64 result, plus 2^-23 |mean| / std * |gamma| (the fp32 mean's rounding, which only
a group of near-equal values far from 0 feels; torch's own fp32 group_norm, reported beside ours, has the same). Cases:
the Chameleon VQ encoder's shapes, odd channel and position counts (the scalar path), an unaligned start, a batch of
images, rank 2 and 5 inputs, a mean far from 0 (the variance must not cancel away), each span's first value (the
kernel's shift) an outlier, spans of several chunks with a shorter last one, refused sizes. Also times the kernels
at the encoder's largest norms against torch's group_norm (+ silu) kernels. Exit status 1 on any failure.
"""
import ctypes
import sys

import torch
import torch.nn.functional as F

from check_common import cuda_us, finish


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lib = ctypes.CDLL(sys.argv[1])
    lib.omm_group_norm_scratch_bytes.restype = ctypes.c_size_t
    lib.omm_group_norm_scratch_bytes.argtypes = [ctypes.c_longlong] * 4
    lib.omm_group_norm.restype = ctypes.c_int
    lib.omm_group_norm.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_longlong] * 4 + [ctypes.c_float, ctypes.c_int, ctypes.c_void_p,
                                                                                      ctypes.c_void_p]
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    g = torch.Generator(device="cuda").manual_seed(2028)

    def run(x, gamma, beta, groups, eps, silu):
        n, c = x.shape[0], x.shape[1]
        positions = x[0, 0].numel() if x.dim() > 2 else 1
        y = torch.full_like(x, float("nan"))
        nbytes = lib.omm_group_norm_scratch_bytes(n, c, positions, groups)
        scratch = torch.empty(max(nbytes, 16), dtype=torch.uint8, device="cuda")
        rc = lib.omm_group_norm(x.data_ptr(), y.data_ptr(), gamma.data_ptr(), beta.data_ptr(), n, c, positions, groups, eps, silu,
                                scratch.data_ptr(), stream)
        return rc, y, scratch

    failures, cases, worst, torch_worst = [], 0, 0.0, 0.0
    shapes = [((1, 128, 512, 512), 32), ((1, 256, 64, 64), 32), ((1, 512, 32, 32), 32), ((2, 64, 24, 24), 32), ((1, 6, 5, 7), 3),
              ((3, 10, 13), 5), ((4, 8), 2), ((1, 4, 3, 2, 5), 2), ((1, 32, 1, 2), 32), ((1, 3, 4, 4), 1),
              ((2, 96, 50, 50), 32)]   # the last: several chunks a span, the last one shorter, two images
    for shape, groups in shapes:
        for silu in (0, 1):
            for mean, scale, offset, outlier in ((0.0, 1.0, 0, 0.0), (10.0, 0.1, 0, 0.0), (0.0, 3.0, 1, 0.0), (0.0, 1.0, 0, 200.0)):
                count = torch.Size(shape).numel()
                if offset and count > 1 << 22:
                    continue
                cases += 1
                buf = torch.randn(count + offset, device="cuda", generator=g) * scale + mean
                x = buf[offset:].view(shape)   # offset 1: a start that is not 16-byte aligned (the scalar path)
                if outlier:   # each span's first value 200 standard deviations out: the kernel's shift is far from the mean
                    x.view(shape[0], groups, -1)[:, :, 0] = outlier
                gamma = torch.randn(shape[1], device="cuda", generator=g) * 0.5 + 1
                beta = torch.randn(shape[1], device="cuda", generator=g) * 0.1
                rc, y, _ = run(x, gamma, beta, groups, 1e-6, silu)
                torch.cuda.synchronize()
                if rc != 0:
                    failures.append(dict(shape=shape, groups=groups, silu=silu, what=f"rc {rc}"))
                    continue
                want = F.group_norm(x.double(), groups, gamma.double(), beta.double(), 1e-6)
                theirs = F.group_norm(x, groups, gamma, beta, 1e-6).double()
                if silu:
                    want, theirs = F.silu(want), F.silu(theirs)
                # the mean is an fp32 value in the kernel (as in torch's): its rounding, 2^-24 |mean| and as much again, is
                # scaled by rstd * gamma, which matters only for groups whose spread is tiny against their mean
                xg = x.double().reshape(shape[0], groups, -1)
                mu, sd = xg.mean(-1, keepdim=True), (xg.var(-1, unbiased=False, keepdim=True) + 1e-6).sqrt()
                cond = (mu.abs() / sd).expand_as(xg).reshape(shape) * gamma.double().abs().reshape([1, -1] + [1] * (len(shape) - 2))
                err = ((y.double() - want).abs() / (1 + want.abs() + 2.0 ** -23 / 5e-5 * cond))
                err = torch.where(torch.isnan(y), torch.full_like(err, float("inf")), err)
                worst = max(worst, float(err.max()))
                torch_worst = max(torch_worst, float(((theirs - want).abs() / (1 + want.abs())).max()))
                if float(err.max()) > 5e-5:
                    i = int(err.flatten().argmax())
                    failures.append(dict(shape=shape, groups=groups, silu=silu, mean=mean, scale=scale, offset=offset,
                                         err=float(err.max()), got=float(y.flatten()[i]), want=float(want.flatten()[i])))
    # refusals: channels not a multiple of groups, n * groups above 65535, negative sizes
    for args in ((1, 6, 4, 4), (70000, 1, 4, 1), (-1, 4, 4, 2)):
        n, c, p, gr = args
        if lib.omm_group_norm(None, None, None, None, n, c, p, gr, 1e-6, 0, None, stream) != -1:
            failures.append(dict(what=f"sizes {args} accepted"))
    timings = []
    for shape in ((1, 128, 512, 512), (1, 256, 128, 128), (1, 512, 32, 32)):
        x = torch.randn(shape, device="cuda")
        gamma, beta = torch.ones(shape[1], device="cuda"), torch.zeros(shape[1], device="cuda")
        _, y, scratch = run(x, gamma, beta, 32, 1e-6, 1)
        n, c = shape[0], shape[1]
        positions = shape[2] * shape[3]
        row = dict(shape=list(shape))

        def ours():
            lib.omm_group_norm(x.data_ptr(), y.data_ptr(), gamma.data_ptr(), beta.data_ptr(), n, c, positions, 32, 1e-6, 1,
                               scratch.data_ptr(), stream)

        def torch_ops():
            return F.silu(F.group_norm(x, 32, gamma, beta, 1e-6))

        for name, fn in (("ours_us", ours), ("torch_group_norm_silu_us", torch_ops)):
            row[name] = cuda_us(fn, 10, 50)
        row["ours_gb_per_s"] = round(x.numel() * 4 * 3 / (row["ours_us"] * 1e-6) / 1e9, 1)   # two reads, one write
        timings.append(row)
    finish(sys.argv[2], f"{cases} cases, {len(failures)} failures, worst {worst:.2e} (torch fp32 {torch_worst:.2e}); timings {timings}",
           failures, cases=cases, worst=worst, torch_fp32_worst=torch_worst, timings=timings)


if __name__ == "__main__":
    main()
