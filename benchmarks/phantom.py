"""Phantom generation throughput (studies per second, files included) by worker count.

    python benchmarks/phantom.py [--n 2000] [--size 128]

Target (SPEC section 8 / the demo issue): at least 200 studies/s including writing the files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from clinclip.phantom import PhantomConfig, generate_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    counts = sorted({1, min(2, cpus), cpus})
    print(f"{args.n} studies, {args.size} px, {cpus} CPUs visible")
    print(f"{'workers':>8} {'seconds':>8} {'studies/s':>10} {'distinct reports':>17}")
    for workers in counts:
        out = Path(tempfile.mkdtemp(prefix="phantom-bench-"))
        try:
            summary = generate_phantom(out / "p", PhantomConfig(n_studies=args.n, image_size=args.size),
                                       workers=workers, progress=False)
            print(f"{workers:>8} {summary.seconds:>8.2f} {summary.studies_per_second:>10.0f} "
                  f"{summary.n_distinct_reports:>17}")
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
