"""Write the synthetic COCO / PASCAL VOC / Cityscapes data of the quick start.

Usage::

    python -m lib.tools.make_synthetic --root data/synthetic [--formats coco,voc,cityscapes] \\
        [--num-train 200] [--num-test 50] [--seed 0] [--size 256] [--fixed-size] [--force]
    python -m lib.tools.make_synthetic --demo-images demo

Writes each requested format that is missing; rewrites one the generator wrote itself, is
unchanged since, and was written with other parameters (or any such one, with ``--force``).
A format directory the generator did not write, or that was edited since it was written (it
compares the fingerprint ``<root>/synthetic/meta.json`` records), is never deleted or written
into: a warning names it and the other formats are still written.
``--demo-images DIR`` writes the images of ``demo/`` instead (scenes at 600x1000, 1024x2048 and
800x600, :func:`lib.dataset.synthetic.write_demo_images`), leaving files of the same name that
differ as they are.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lib.dataset.synthetic import FORMATS, generate, write_demo_images
from lib.utils.cli import add_debug_arg, run_cli


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the command line, generate, and return the meta dict."""
    parser = argparse.ArgumentParser(
        prog="python -m lib.tools.make_synthetic",
        description="Generate synthetic detection/segmentation data in the real COCO, "
        "VOC and Cityscapes layouts (see lib/dataset/synthetic.py).",
    )
    parser.add_argument("--root", default="data/synthetic", help="data root (default: %(default)s)")
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="comma-separated subset of %(default)s",
    )
    parser.add_argument("--num-train", type=int, default=200, help="train scenes")
    parser.add_argument("--num-test", type=int, default=50, help="test / val scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="nominal image side in pixels")
    parser.add_argument(
        "--fixed-size",
        action="store_true",
        help="every image exactly size x size (default: sides drawn in [0.8, 1.25] x size)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite the generator's own unchanged trees even if up to date (trees it did not "
        "write, or that were edited since, are never touched)",
    )
    parser.add_argument("--demo-images", metavar="DIR", default=None,
                        help="write the demo images (demo/) to DIR instead")  # fmt: skip
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.demo_images:
        return {
            "demo_images": [str(p) for p in write_demo_images(args.demo_images, seed=args.seed)]
        }
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {','.join(FORMATS)}")

    return generate(
        args.root,
        formats=formats,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        size=args.size,
        fixed_size=args.fixed_size,
        force=args.force,
    )


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="make_synthetic"))
