"""CLI commands of the 'phantom' part: ``clinclip phantom`` (synthetic data) and ``clinclip demo``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from clinclip.cli.errors import user_errors


@user_errors
def phantom(
    out: Path = typer.Option(..., "--out", help="Folder to write the MIMIC-CXR-JPG-style collection into."),
    n: int = typer.Option(3000, "--n", help="Number of studies (one frontal image and one report each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same files."),
    size: int = typer.Option(128, "--size", help="Image side in pixels (at least 64)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of patients in the test split."),
    workers: int = typer.Option(None, "--workers", help="Worker processes (default: CPU count, at most 8)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Generate phantom chest X-ray studies: synthetic reports and label-driven synthetic radiographs,
    written in the MIMIC-CXR-JPG layout (read them with `clinclip prepare mimic-cxr`)."""
    from rich.console import Console
    from rich.table import Table

    from clinclip.phantom import PhantomConfig, generate_phantom

    cfg = PhantomConfig(n_studies=n, seed=seed, image_size=size, test_fraction=test_fraction)
    summary = generate_phantom(out, cfg, workers=workers, overwrite=overwrite)
    console = Console()
    table = Table(title=f"phantom collection in {summary.out_dir}")
    table.add_column("observation")
    table.add_column("studies (positive or uncertain)", justify="right")
    for name, count in summary.label_counts.items():
        table.add_row(name, str(count))
    console.print(table)
    console.print(
        f"{summary.n_studies} studies of {summary.n_subjects} patients "
        f"(split {summary.split_counts}); {summary.n_distinct_reports} distinct reports; "
        f"{summary.n_counterfactuals} counterfactual images (one finding taken away); "
        f"{summary.seconds:.1f} s ({summary.studies_per_second:.0f} studies/s)"
    )


@user_errors
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for everything the demo writes."),
    n: int = typer.Option(None, "--n", help="Phantom studies (default 3000; 240 with --quick)."),
    steps: int = typer.Option(None, "--steps", help="Training steps per model."),
    batch_size: int = typer.Option(None, "--batch-size", help="Training batch size."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the training and the evaluation."),
    device: str = typer.Option("auto", "--device", help="auto (a CUDA GPU when there is one), cpu, cuda, cuda:N."),
    loss: Optional[List[str]] = typer.Option(
        None, "--loss", help="Loss override KEY=VALUE for the trained variants, repeatable (e.g. taus.t=0.9); "
                             "replaces the demo's own (taus.t=0.95, taus.g=0.95)."),
    eval_split: str = typer.Option("test", "--eval-split",
                                   help="Split every number is measured on: validate (to choose settings) or test."),
    quick: bool = typer.Option(False, "--quick",
                               help="A reduced run (a minute or two): checks the plumbing; its numbers mean nothing."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when an expectation fails."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous demo's outputs in --out."),
) -> None:
    """Run the method end to end on phantom data (CPU, no download, ~15 min): generate (with counterfactual
    images), adapt, prepare the reports, train clip, clip-n and clip-ng-dtcg, evaluate each (CXR-Align with
    its shortcut controls and counterfactual scores, zero-shot, adversarial), and write results.json and
    report.html with a PASS/FAIL line per expectation."""
    from clinclip.apps.demo import DemoConfig, run_demo
    from clinclip.outputs import check_output

    check_output(out, folder=True, overwrite=True)  # a file there is an error; run_demo refuses old outputs
    overrides = {k: v for k, v in dict(n_studies=n, steps=steps, batch_size=batch_size, lr=lr).items()
                 if v is not None}
    if loss is not None:
        overrides["loss_overrides"] = _loss_overrides(loss)
    make = DemoConfig.quick if quick else DemoConfig
    cfg = make(seed=seed, device=device, eval_split=eval_split, **overrides)
    outcome = run_demo(out, cfg, overwrite=overwrite)
    if strict and not all(e.passed for e in outcome.expectations):
        raise typer.Exit(code=1)


def _loss_overrides(items: List[str]) -> dict:
    """``--loss taus.t=0.9`` items as the demo's loss overrides (values parsed as ``clinclip train`` does)."""
    from clinclip.train.config import parse_overrides

    return {key.removeprefix("loss."): value for key, value in parse_overrides(items).items()}


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.command(name="phantom")(phantom)
    app.command(name="demo")(demo)
