"""The README's synthetic results: every synthetic config trained from scratch and tested, one
run at a time, each in its own process, with ``--seed 0``; then the test-scale / soft-NMS
variants on the Deformable R-FCN and Deformable FPN checkpoints. Prints Markdown tables.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_synthetic.py [--only rfcn_dcn,rfcn ...]
        [--output output/bench_synthetic] [--no-variants]

Each run goes to its own ``output_path`` (``--output``/<config>), started with ``--overwrite``;
the wall time is training and testing together. The metrics are the ``results of ...`` line of
the run's log (COCO AP / AP50 for the detectors, mean IoU and pixel accuracy for DeepLab).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: name -> (driver, config, network)
RUNS = {
    "rfcn_dcn": ("experiments/rfcn/rfcn_end2end_train_test.py",
                 "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml", "Deformable R-FCN"),
    "rfcn": ("experiments/rfcn/rfcn_end2end_train_test.py",
             "experiments/rfcn/cfgs/synthetic_rfcn.yaml", "R-FCN"),
    "rcnn_dcn": ("experiments/faster_rcnn/rcnn_end2end_train_test.py",
                 "experiments/faster_rcnn/cfgs/synthetic_rcnn_dcn.yaml", "Deformable Faster R-CNN"),
    "rcnn": ("experiments/faster_rcnn/rcnn_end2end_train_test.py",
             "experiments/faster_rcnn/cfgs/synthetic_rcnn.yaml", "Faster R-CNN (2fc)"),
    "fpn_dcn": ("experiments/fpn/fpn_end2end_train_test.py",
                "experiments/fpn/cfgs/synthetic_fpn_dcn.yaml", "Deformable FPN"),
    "fpn": ("experiments/fpn/fpn_end2end_train_test.py",
            "experiments/fpn/cfgs/synthetic_fpn.yaml", "FPN"),
    "deeplab_dcn": ("experiments/deeplab/deeplab_train_test.py",
                    "experiments/deeplab/cfgs/synthetic_deeplab_dcn.yaml", "Deformable DeepLab"),
    "deeplab": ("experiments/deeplab/deeplab_train_test.py",
                "experiments/deeplab/cfgs/synthetic_deeplab.yaml", "DeepLab"),
}  # fmt: skip

#: The checkpoints tested again with other test scales and soft-NMS.
VARIANTS_OF = ("rfcn_dcn", "fpn_dcn")
#: Test variants: name -> --set items.
THREE_SCALES = "TEST_SCALES=[[224,336],[256,384],[320,480]]"
VARIANTS = {
    "one scale, NMS": [],
    "one scale, soft-NMS": ["TEST.USE_SOFTNMS=true"],
    "three scales, NMS": [THREE_SCALES],
    "three scales, soft-NMS": [THREE_SCALES, "TEST.USE_SOFTNMS=true"],
}

RESULTS = re.compile(r"results of \S+ on \S+: (\{.*\})")


def _run(args: list[str], log: Path) -> tuple[float, dict]:
    """Runs a driver; returns (wall seconds, the metrics of its last 'results of' line)."""
    tic = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, stdout=f,
                              stderr=subprocess.STDOUT)  # fmt: skip
    seconds = time.perf_counter() - tic
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed (status {proc.returncode}); see {log}")
    found = RESULTS.findall(log.read_text())
    if not found:
        raise SystemExit(f"no 'results of' line in {log}")
    return seconds, json.loads(found[-1])


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated run names")
    parser.add_argument("--output", default="output/bench_synthetic")
    parser.add_argument("--no-variants", action="store_true", help="skip the test variants")
    args = parser.parse_args()
    out = (REPO / args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {', '.join(RUNS)}")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")  # fmt: skip
    print(f"CPU: {cpu}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")

    rows = {}
    for name in names:
        driver, cfg, network = RUNS[name]
        seconds, metrics = _run([driver, "--cfg", cfg, "--seed", "0", "--overwrite", "--set",
                                 f"output_path={out / name}"], out / f"{name}.log")  # fmt: skip
        rows[name] = (cfg, network, seconds, metrics)
        print(f"{name}: {_minutes(seconds)} {metrics}", flush=True)

    print(
        "\n| config | network | wall time | mAP@0.5 (AP50) | AP@[.5:.95] | AP small / medium "
        "/ large |\n| --- | --- | --- | ---: | ---: | --- |"
    )
    for cfg, network, seconds, m in (r for r in rows.values() if "AP50" in r[3]):
        sml = " / ".join(f"{m[k]:.3f}" for k in ("APs", "APm", "APl") if k in m)
        print(
            f"| `{Path(cfg).name}` | {network} | {_minutes(seconds)} | {m['AP50']:.3f} | "
            f"{m['AP']:.3f} | {sml} |"
        )
    print(
        "\n| config | network | wall time | mean IoU | pixel accuracy |\n"
        "| --- | --- | --- | ---: | ---: |"
    )
    for cfg, network, seconds, m in (r for r in rows.values() if "meanIU" in r[3]):
        print(
            f"| `{Path(cfg).name}` | {network} | {_minutes(seconds)} | {m['meanIU']:.3f} | "
            f"{m['pixel_accuracy']:.3f} |"
        )

    if args.no_variants:
        return
    print(
        "\n| network | test | AP50 / AP | AP small / medium / large | test pass (wall, s) |\n"
        "| --- | --- | --- | --- | ---: |"
    )
    for name in (n for n in VARIANTS_OF if n in rows):
        driver, cfg, network = RUNS[name]
        driver = driver.replace("_end2end_train_test.py", "_test.py")
        for label, extra in VARIANTS.items():
            sets = [a for s in [f"output_path={out / name}", *extra] for a in ("--set", s)]
            log = out / f"variant_{name}_{label.replace(', ', '_').replace(' ', '_')}.log"
            seconds, m = _run([driver, "--cfg", cfg, "--ignore_cache", *sets], log)
            sml = " / ".join(f"{m[k]:.3f}" for k in ("APs", "APm", "APl"))
            print(
                f"| {network} | {label} | {m['AP50']:.3f} / {m['AP']:.3f} | {sml} | "
                f"{seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
