"""Benchmark: our PSROIPooling / DeformablePSROIPooling vs MXNet's contrib ops (CPU, float32).

Shapes are the R-FCN head on a 600x1000 image: a 38x63 feature map (stride 16), 300 random rois
inside the image, 81 classes, 7x7 bins. Cases:

* DeformablePSROIPooling with trans: data (1, 7938, 38, 63), trans (300, 162, 7, 7),
  output_dim 162, group 7, pooled 7, part 7, sample_per_part 4, trans_std 0.1 (the targets);
* the same with no_trans;
* PSROIPooling: data (1, 3969, 38, 63), output_dim 81, 7x7.

Each repetition times ours and contrib back to back (round robin, so that machine load hits both
alike), forward alone and forward + backward (autograd, gradients of data and trans); the table
shows medians and the speed-ups contrib / ours. Run from the repository root::

    .venv/bin/python -m bench.bench_psroi [--reps 5] [--warmup 1] [--no-contrib]

Threads: the ops use OpenMP's default team, which MXNet sets for its own operators. On x86
MXNet halves the core count (assuming hyper-threading) unless OMP_NUM_THREADS or
MXNET_OMP_MAX_THREADS is set, so on a 2-core machine run with OMP_NUM_THREADS=2 to use both.
Timings on a shared machine are noisy: compare the ratios within one run.
"""

import argparse
import ctypes
import os
import statistics
import time

import mxnet as mx
import numpy as np

from lib import ops

# DeformablePSROIPooling with trans on the R-FCN head, ms.
TARGET_FWD_MS = 150.0
TARGET_FWD_BWD_MS = 400.0
TARGET_CASE = "DeformablePSROIPooling (trans)"


def random_rois(rng, num, height=600, width=1000):
    """Boxes [0, x1, y1, x2, y2] inside a height x width image."""
    x = np.sort(rng.uniform(0, width - 1, (num, 2)), axis=1)
    y = np.sort(rng.uniform(0, height - 1, (num, 2)), axis=1)
    return np.stack([np.zeros(num), x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)


def cases(rng):
    """(title, op name, input arrays, attributes) per case."""
    feat = (38, 63)
    rois = random_rois(rng, 300)
    data = rng.standard_normal((1, 7938, *feat)).astype(np.float32)
    trans = rng.standard_normal((300, 2 * 81, 7, 7)).astype(np.float32)
    dps = {
        "spatial_scale": 0.0625,
        "output_dim": 162,
        "group_size": 7,
        "pooled_size": 7,
        "part_size": 7,
        "sample_per_part": 4,
        "trans_std": 0.1,
    }
    psroi_data = rng.standard_normal((1, 81 * 49, *feat)).astype(np.float32)
    return [
        (TARGET_CASE, "DeformablePSROIPooling", [data, rois, trans], dps),
        (
            "DeformablePSROIPooling (no_trans)",
            "DeformablePSROIPooling",
            [data, rois],
            {**dps, "no_trans": True},
        ),
        (
            "PSROIPooling",
            "PSROIPooling",
            [psroi_data, rois],
            {"spatial_scale": 0.0625, "output_dim": 81, "pooled_size": 7, "group_size": 7},
        ),
    ]


def timed(fn, inputs, attrs, backward):
    """Wall time in ms of one forward (and backward w.r.t. data and trans)."""
    mx.nd.waitall()
    t0 = time.perf_counter()
    if backward:
        with mx.autograd.record():
            out = fn(*inputs, **attrs)
        out.backward()
        for a in [inputs[0], *inputs[2:]]:
            a.grad.wait_to_read()
    else:
        fn(*inputs, **attrs).wait_to_read()
    return (time.perf_counter() - t0) * 1e3


def bench_case(name, arrays, attrs, reps, warmup, with_contrib):
    """Medians {(impl, 'fwd' | 'fwd_bwd'): ms}."""
    inputs = [mx.nd.array(a, dtype=np.float32) for a in arrays]
    for a in [inputs[0], *inputs[2:]]:
        a.attach_grad()
    impls = {"ours": getattr(mx.nd, name)}
    if with_contrib:
        impls["contrib"] = getattr(mx.nd.contrib, name)
    times = {(impl, kind): [] for impl in impls for kind in ("fwd", "fwd_bwd")}
    for rep in range(warmup + reps):
        for impl, fn in impls.items():
            for kind in ("fwd", "fwd_bwd"):
                ms = timed(fn, inputs, attrs, backward=kind == "fwd_bwd")
                if rep >= warmup:
                    times[(impl, kind)].append(ms)
    return {key: statistics.median(v) for key, v in times.items()}


def omp_threads():
    """OpenMP threads of MXNet's engine threads, as MXNet decides them (see the docstring)."""
    for var in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"):
        if os.environ.get(var):
            return f"{os.environ[var]} ({var})"
    procs = ctypes.CDLL("libgomp.so.1").omp_get_num_procs()
    return f"{max(1, procs // 2)} (MXNet default: {procs} processors / 2)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--no-contrib", action="store_true", help="time our ops only")
    args = parser.parse_args()

    ops.load()
    rng = np.random.default_rng(0)
    nan = float("nan")
    print(
        f"R-FCN head, float32, 300 rois, 7x7 bins; OpenMP threads: {omp_threads()}; "
        f"median of {args.reps}"
    )
    print()
    print(
        "| op | fwd ours ms | fwd contrib ms | fwd speed-up | fwd+bwd ours ms "
        "| fwd+bwd contrib ms | fwd+bwd speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    checks = []
    for title, name, arrays, attrs in cases(rng):
        t = bench_case(name, arrays, attrs, args.reps, args.warmup, not args.no_contrib)
        fwd, fwd_bwd = t[("ours", "fwd")], t[("ours", "fwd_bwd")]
        c_fwd, c_fwd_bwd = t.get(("contrib", "fwd"), nan), t.get(("contrib", "fwd_bwd"), nan)
        print(
            f"| {title} | {fwd:.1f} | {c_fwd:.1f} | {c_fwd / fwd:.1f}x | {fwd_bwd:.1f} "
            f"| {c_fwd_bwd:.1f} | {c_fwd_bwd / fwd_bwd:.1f}x |",
            flush=True,
        )
        if title == TARGET_CASE:
            checks.append(
                f"forward {fwd:.1f} ms <= {TARGET_FWD_MS:.0f} ms: "
                f"{'yes' if fwd <= TARGET_FWD_MS else 'NO'}"
            )
            checks.append(
                f"forward+backward {fwd_bwd:.1f} ms <= {TARGET_FWD_BWD_MS:.0f} ms: "
                f"{'yes' if fwd_bwd <= TARGET_FWD_BWD_MS else 'NO'}"
            )
    print()
    print(f"Targets ({TARGET_CASE}):")
    for c in checks:
        print(f"- {c}")


if __name__ == "__main__":
    main()
