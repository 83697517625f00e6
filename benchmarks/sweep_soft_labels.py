"""Soft-label sweep: how the results of ``clip-ng-dtcg`` move with the thresholds τ_t, τ_c, τ_g and the
stream weights w_t, w_c, w_g (SPEC section 4: the paper publishes none of them; ours are starting points).

    python benchmarks/sweep_soft_labels.py --grid taus.c=0.3,0.5,0.7 [--grid weights.g=0,1] \
        [--manifest PREPARED.parquet] [--steps 100] [--n 1000] [--out sweep_out]

Each grid point (the Cartesian product of the ``--grid`` axes) trains the ``tiny`` model with the
``clip-ng-dtcg`` variant and the point's loss overrides (the keys of ``loss.taus.c=0.3`` on the
``clinclip train`` command line) for ``--steps`` steps, under the demo's training settings, then
evaluates it on the validate split (--split; test only for a chosen setting): CXR-Align A and B, mean zero-shot AUC (default prompts) and the
adversarial accuracy. Same data, same seed, same steps for every point.

Without ``--manifest`` a phantom collection of ``--n`` studies is generated and prepared exactly as
``clinclip demo`` does (phantom → real mimic-cxr adapter → real report pipeline). With ``--manifest`` the
prepared manifest must have the chosen split; images are resolved as training resolves them.

Prints a table and writes ``sweep.csv`` and ``sweep.json`` into ``--out``. The numbers of short runs
on phantom data are noisy: compare points against each other, not with the paper.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

SWEEPABLE = tuple(f"{group}.{stream}" for group in ("taus", "weights") for stream in ("t", "c", "g"))
METRICS = ("cxr_align_a", "cxr_align_b", "zero_shot_auc_mean", "adversarial_acc", "final_loss", "train_seconds")
VARIANT = "clip-ng-dtcg"


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """``["taus.c=0.3,0.5", "weights.g=0,1"]`` -> {"taus.c": [0.3, 0.5], "weights.g": [0.0, 1.0]}."""
    from clinclip.errors import ClinclipError

    grid: dict[str, list[float]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("loss.")
        if not sep or key not in SWEEPABLE:
            raise ClinclipError(f"--grid {item!r}: expected KEY=v1,v2,... with KEY one of {', '.join(SWEEPABLE)}")
        try:
            parsed = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise ClinclipError(f"--grid {item!r}: values must be numbers ({exc})") from None
        if not parsed:
            raise ClinclipError(f"--grid {item!r}: no values")
        if key in grid:
            raise ClinclipError(f"--grid {key} given twice")
        grid[key] = parsed
    return grid


def grid_points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict[str, float]) -> str:
    return "_".join(f"{k}={v:g}" for k, v in point.items()) or "preset"


def write_point_config(point: dict[str, float], path: Path) -> Path:
    """A training config YAML naming the variant with the point's loss overrides. ``demo._train`` takes a
    variant or such a file in the same argument; its own settings (steps, data, ...) apply on top."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"variant": VARIANT, "loss_overrides": dict(point)}, sort_keys=False))
    return path


def prepare_phantom(out: Path, demo_cfg, console) -> Path:
    """Phantom → mimic-cxr adapter → report pipeline, with the demo's own stages."""
    from clinclip.apps import demo

    data = out / "data"
    console.print(f"phantom: {demo_cfg.n_studies} studies → {data}")
    demo._make_phantom(demo_cfg, data / "phantom")
    manifest, adapter_summary = demo._adapt(data / "phantom", data / "manifest.parquet")
    console.print(f"adapter: {adapter_summary.rows_kept} of {adapter_summary.rows_read} rows kept; "
                  f"skipped: {adapter_summary.skipped or 'none'}")
    prepared, summary = demo._prepare(manifest, data / "prepared.parquet", demo_cfg)
    console.print("report pipeline: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.items())))
    return prepared


def build_align_benchmark(prepared: Path, out: Path, source: str, seed: int, split: str, console,
                          phantom_root: Path | None = None) -> dict:
    from clinclip.evaluate.cxr_align import attach_counterfactuals, build_benchmark, write_benchmark
    from clinclip.manifest import read_manifest, select_split
    from clinclip.phantom import read_counterfactuals

    frame = select_split(read_manifest(prepared), split, prepared)
    benchmark, skipped = build_benchmark(frame, source=source, seed=seed, labeler_backend="rules", manifest=prepared)
    if phantom_root is not None:
        attach_counterfactuals(benchmark, read_counterfactuals(phantom_root))
    write_benchmark(benchmark, out / "cxr_align.json")
    console.print(f"CXR-Align: {len(benchmark[source])} triplets from the {split} split; left out: {dict(skipped)}")
    return benchmark


def run_point(point: dict[str, float], prepared: Path, benchmark: dict, out: Path, demo_cfg) -> dict:
    from clinclip.apps import demo

    point_dir = out / "points" / point_name(point)
    config = write_point_config(point, point_dir / "train.yaml")
    start = time.perf_counter()
    trained = demo._train(str(config), prepared, point_dir / "run", demo_cfg)
    seconds = time.perf_counter() - start
    classifier = demo.text_classifier_from_manifest(prepared, seed=demo_cfg.seed)
    evaluated = demo._evaluate(VARIANT, trained.model_dir, prepared, benchmark, point_dir / "cache", demo_cfg,
                               classifier)
    summary = demo._summary(evaluated, seconds, demo.read_training_log(point_dir / "run"))
    return {**point, **summary, "split": demo_cfg.eval_split, "model_dir": str(trained.model_dir)}


def check_points(points: list[dict[str, float]], out: Path) -> None:
    """Resolve every point's loss configuration before training anything: a bad value fails now."""
    from clinclip.train import TrainConfig

    for point in points:
        config = write_point_config(point, out / "points" / point_name(point) / "train.yaml")
        TrainConfig.from_presets(model="tiny", variant=str(config), overrides={"data.manifest": "unused.parquet"}).loss_config()


def print_table(console, rows: list[dict], keys: list[str]) -> None:
    from rich.table import Table

    table = Table(title=f"{VARIANT}: soft-label sweep ({rows[0].get('split', '?') if rows else '?'} split)")
    for key in keys:
        table.add_column(key, justify="right")
    for name in ("Align A", "Align B", "ZS AUC", "adv. acc", "loss", "train s"):
        table.add_column(name, justify="right")
    best_a = max((r["cxr_align_a"] for r in rows), default=None)
    for r in rows:
        a = f"{100 * r['cxr_align_a']:.1f}%"
        cells = [f"{r[k]:g}" for k in keys] + [
            f"[bold]{a}[/bold]" if r["cxr_align_a"] == best_a else a,
            f"{100 * r['cxr_align_b']:.1f}%",
            f"{r['zero_shot_auc_mean']:.3f}",
            f"{100 * r['adversarial_acc']:.1f}%",
            "-" if r["final_loss"] is None else f"{r['final_loss']:.3f}",
            f"{r['train_seconds']:.0f}",
        ]
        table.add_row(*cells)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help=f"an axis of the grid; KEY in {', '.join(SWEEPABLE)} (repeatable; default taus.c=0.3,0.5,0.7)")
    parser.add_argument("--manifest", type=Path, help="prepared manifest with train and validate splits (default: a phantom set)")
    parser.add_argument("--source", default="mimic", help="CXR-Align source name of --manifest (default mimic)")
    parser.add_argument("--n", type=int, default=1000, help="phantom studies when no --manifest (default 1000)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per grid point (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="validate", choices=("validate", "test"),
                        help="split every point is scored on (default validate: settings are chosen there; "
                             "score test once, for the chosen setting)")
    parser.add_argument("--workers", type=int, default=None, help="data workers (default: the demo's)")
    parser.add_argument("--out", type=Path, default=Path("sweep_out"))
    args = parser.parse_args(argv)

    from rich.console import Console

    from clinclip.errors import ClinclipError
    from clinclip.apps.demo import DemoConfig

    console = Console()
    try:
        grid = parse_grid(args.grid or ["taus.c=0.3,0.5,0.7"])
        points = grid_points(grid)
        args.out.mkdir(parents=True, exist_ok=True)
        check_points(points, args.out)
        demo_cfg = DemoConfig(n_studies=args.n, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                              workers=args.workers, warmup_steps=max(1, args.steps // 10), variants=(VARIANT,),
                              loss_overrides={}, eval_split=args.split)  # the grid starts from the preset, not the demo's taus
        start = time.perf_counter()
        prepared = args.manifest if args.manifest else prepare_phantom(args.out, demo_cfg, console)
        phantom_root = None if args.manifest else args.out / "data" / "phantom"
        benchmark = build_align_benchmark(prepared, args.out, args.source, args.seed, args.split, console, phantom_root)
        rows = []
        for i, point in enumerate(points, 1):
            console.rule(f"[bold]{i}/{len(points)} {point_name(point)}")
            rows.append(run_point(point, prepared, benchmark, args.out, demo_cfg))
            console.print(f"CXR-Align A {100 * rows[-1]['cxr_align_a']:.1f}%, zero-shot AUC "
                          f"{rows[-1]['zero_shot_auc_mean']:.3f}, trained in {rows[-1]['train_seconds']:.0f} s")
    except ClinclipError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2

    import pandas as pd

    from clinclip.evaluate.results import jsonable

    keys = list(grid)
    print_table(console, rows, keys)
    flat = [{k: r[k] for k in (*keys, *METRICS)} for r in rows]
    pd.DataFrame(flat).to_csv(args.out / "sweep.csv", index=False)
    payload = {"variant": VARIANT, "grid": grid, "data": str(prepared), "steps": args.steps,
               "batch_size": args.batch_size, "seed": args.seed, "n_studies": None if args.manifest else args.n,
               "wall_seconds": time.perf_counter() - start, "points": rows}
    (args.out / "sweep.json").write_text(json.dumps(jsonable(payload), indent=2, default=str))  # NaN -> null
    console.print(f"written: {args.out / 'sweep.csv'}, {args.out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
