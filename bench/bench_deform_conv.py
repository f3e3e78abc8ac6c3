"""Benchmark: our DeformableConvolution vs MXNet's contrib op vs a dense Convolution (CPU, fp32).

Times, in one run and round-robin (so that machine load hits every variant alike), the forward
and the forward+backward (autograd, gradients of every input) of

* ours: the library op ``DeformableConvolution`` (lib.ops),
* contrib: ``mx.nd.contrib.DeformableConvolution`` (MXNet's built-in, old sampling rule),
* dense: ``mx.nd.Convolution`` of the same shape (no offsets),

and prints a markdown table with medians, the ratios ours/dense and contrib/ours, and whether
the targets hold. Usage::

    .venv/bin/python bench/bench_deform_conv.py [--reps 7] [--warmup 2] [--shapes A B C]
"""

import argparse
import statistics
import time

import mxnet as mx
import numpy as np

import lib.ops as ops

# name: (N, C, H, W, F, kernel, pad, dilate, deformable groups)
SHAPES = {
    "A": (1, 256, 64, 64, 256, (3, 3), (1, 1), (1, 1), 1),
    "B": (1, 512, 38, 63, 512, (3, 3), (2, 2), (2, 2), 4),
    "C": (2, 64, 128, 128, 64, (3, 3), (1, 1), (1, 1), 1),
}
# shape: (max ours/dense fwd, max ours/dense fwd+bwd); every shape: contrib/ours >= 2 fwd, 4 fwd+bwd
DENSE_TARGETS = {"A": (1.6, 2.5), "B": (1.6, 2.5), "C": (4.0, 6.0)}
CONTRIB_TARGETS = (2.0, 4.0)


def make_case(shape, seed=0):
    n, c, h, w, f, kernel, pad, dilate, dg = shape
    rng = np.random.default_rng(seed)
    taps = kernel[0] * kernel[1]
    arrays = {
        "data": rng.standard_normal((n, c, h, w)),
        "offset": rng.uniform(-2, 2, (n, dg * 2 * taps, h, w)),
        "weight": rng.standard_normal((f, c, *kernel)) * 0.05,
    }
    arrays = {k: mx.nd.array(v, dtype=np.float32) for k, v in arrays.items()}
    attrs = dict(kernel=kernel, pad=pad, dilate=dilate, num_filter=f, no_bias=True)

    def ours(data, offset, weight):
        return mx.nd.DeformableConvolution(data, offset, weight, num_deformable_group=dg, **attrs)

    def contrib(data, offset, weight):
        return mx.nd.contrib.DeformableConvolution(
            data, offset, weight, num_deformable_group=dg, **attrs
        )

    def dense(data, offset, weight):
        return mx.nd.Convolution(data, weight, **attrs)

    return arrays, {"ours": ours, "contrib": contrib, "dense": dense}


def run_forward(fn, arrays):
    fn(arrays["data"], arrays["offset"], arrays["weight"])
    mx.nd.waitall()


def run_forward_backward(fn, arrays, head):
    with mx.autograd.record():
        out = fn(arrays["data"], arrays["offset"], arrays["weight"])
    out.backward(head)
    mx.nd.waitall()


def bench_shape(shape, reps, warmup):
    arrays, fns = make_case(shape)
    for a in arrays.values():
        a.attach_grad()
    head = mx.nd.ones_like(fns["dense"](**arrays))
    times = {(name, mode): [] for name in fns for mode in ("fwd", "fwd+bwd")}
    for rep in range(warmup + reps):
        for name, fn in fns.items():  # round-robin: load changes hit every variant alike
            for mode in ("fwd", "fwd+bwd"):
                t0 = time.perf_counter()
                if mode == "fwd":
                    run_forward(fn, arrays)
                else:
                    run_forward_backward(fn, arrays, head)
                if rep >= warmup:
                    times[(name, mode)].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    ops.load()

    rows = []
    all_ok = True
    for key in args.shapes:
        n, c, h, w, f, kernel, pad, dilate, dg = SHAPES[key]
        t = bench_shape(SHAPES[key], args.reps, args.warmup)
        for mode, i in (("fwd", 0), ("fwd+bwd", 1)):
            ours, contrib, dense = t[("ours", mode)], t[("contrib", mode)], t[("dense", mode)]
            vs_dense, vs_contrib = ours / dense, contrib / ours
            ok = vs_dense <= DENSE_TARGETS[key][i] and vs_contrib >= CONTRIB_TARGETS[i]
            all_ok &= ok
            desc = f"{key}: N{n} C{c} {h}x{w}->{f} k{kernel[0]} p{pad[0]} d{dilate[0]} dg{dg}"
            rows.append(
                f"| {desc} | {mode} | {ours:.1f} | {contrib:.1f} | {dense:.1f} | "
                f"{vs_dense:.2f} (<= {DENSE_TARGETS[key][i]:g}) | "
                f"{vs_contrib:.2f} (>= {CONTRIB_TARGETS[i]:g}) | {'yes' if ok else 'NO'} |"
            )
    print(
        f"median of {args.reps} reps after {args.warmup} warm-up, float32, "
        f"mxnet {mx.__version__}, times in ms\n"
    )
    print("| shape | pass | ours | contrib | dense | ours/dense | contrib/ours | target met |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(rows))
    print(f"\nall targets met: {'yes' if all_ok else 'NO'}")


if __name__ == "__main__":
    main()
