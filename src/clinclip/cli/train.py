"""CLI: ``clinclip train VARIANT_OR_CONFIG_YAML [key=value ...] [--resume] [--init DIR]`` (also under
``torchrun --nproc-per-node N -m clinclip train ...``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from clinclip.cli.errors import user_errors

EPILOG = (
    "Examples:\n\n"
    "  clinclip train clip-ng-dtcg model=tiny data.manifest=prepared.parquet --out runs/x steps=200\n\n"
    "  clinclip train clip-ng-dtcg model=paper data.manifest=mimic.parquet out_dir=runs/paper\n\n"
    "  torchrun --nproc-per-node 4 -m clinclip train clip-ng-dtcg model=paper data.manifest=m.parquet\n\n"
    "  clinclip train runs/x/config.yaml --resume\n\n"
    "  clinclip train con2 --init /models/chexagent-siglip data.manifest=prepared.parquet lr=1e-5 steps=2000\n\n"
    "Keys: see `clinclip train --show-config` (model.<key> and loss.<key> reach into the model preset and the "
    "loss variant, e.g. model.text.max_text_length=128 loss.taus.t=0.7)."
)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.command("train", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})(train)


@user_errors
def train(
    variant_or_config: str = typer.Argument(
        ..., metavar="VARIANT_OR_CONFIG_YAML",
        help="A loss variant (clip, clip-dt, clip-dtc, clip-n, clip-n-dtc, clip-g, clip-g-dtcg, clip-ng-dtcg, "
             "softclip, con1, con2), a variant YAML, or a training config YAML (e.g. a run's config.yaml)."),
    overrides: Optional[List[str]] = typer.Argument(
        None, metavar="[KEY=VALUE]...", help="Config overrides with dotted keys, e.g. data.manifest=p.parquet "
                                             "steps=200 lr=1e-4 model=paper."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/checkpoints/last.pt."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this model directory: a clinclip model "
                                                            "or a Hugging Face CLIP / SigLIP directory."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (the same as out_dir=...).",
                                       show_default="out_dir of the config (runs/clinclip)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run's outputs in the run folder "
                                                              "(config, log, checkpoints, model)."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved config and exit."),
) -> None:
    """Train a model on a prepared manifest (one process, or DDP under torchrun); writes OUT_DIR/config.yaml,
    log.jsonl, checkpoints/last.pt and the final model in OUT_DIR/model."""
    from clinclip.errors import ClinclipError
    from clinclip.train.config import TrainConfig

    values = dict(_split(overrides or []))
    if out is not None:
        if "out_dir" in values and Path(str(values["out_dir"])) != out:
            raise ClinclipError(f"--out {out} and out_dir={values['out_dir']} disagree; give one of them")
        values["out_dir"] = str(out)
    if resume and overwrite:
        raise ClinclipError("--resume continues a run and --overwrite replaces it; give one of them")
    if resume:
        values["resume"] = "true"
    if init is not None:
        values["init"] = str(init)
    cfg = TrainConfig.build(variant_or_config, values)
    cfg.loss_config()  # a bad variant or loss override fails here, before any model is built
    if show_config:
        typer.echo(cfg.to_yaml())
        return
    if not cfg.resume:
        _claim_run_folder(Path(cfg.out_dir).expanduser(), overwrite, cfg.data.manifest)
    from clinclip.train.loop import run_training

    result = run_training(cfg)
    if result.stopped_by is not None:  # a preemption notice: checkpoint written, exit "temporary failure"
        raise typer.Exit(code=PREEMPTED_EXIT_CODE)
    if result.history:
        last = result.history[-1]
        typer.echo(f"trained {result.steps} steps in {result.seconds:.0f} s; last loss {last['loss']:.4f}; "
                   f"model: {result.model_dir}; log: {result.log_path}")


# EX_TEMPFAIL: stopped by SIGTERM/SIGUSR1 after writing a checkpoint; rerun with --resume (the SLURM script
# in docs/training.md requeues on it).
PREEMPTED_EXIT_CODE = 75


def _split(items: List[str]):
    from clinclip.train.config import parse_overrides

    return parse_overrides(items).items()


def _claim_run_folder(out_dir: Path, overwrite: bool, manifest) -> None:
    """The output convention for a run folder: a previous run's outputs are replaced only with --overwrite
    (and then removed first, so nothing stale is left beside the new run); never the manifest."""
    import shutil

    from clinclip.outputs import check_output
    from clinclip.train.checkpoint import CHECKPOINT_DIR
    from clinclip.train.config import CONFIG_FILE
    from clinclip.train.loop import LOG_FILE, MODEL_DIR, SUMMARY_FILE

    check_output(out_dir, folder=True, overwrite=True, inputs=[manifest], option="out_dir")
    found = [name for name in (CONFIG_FILE, LOG_FILE, SUMMARY_FILE, CHECKPOINT_DIR, MODEL_DIR, "tensorboard")
             if (out_dir / name).exists()]
    if found and not overwrite:
        from clinclip.errors import ClinclipError

        raise ClinclipError(f"{out_dir}: holds a previous run ({', '.join(found)}); continue it with --resume, "
                            "replace it with --overwrite, or choose another --out")
    for name in found:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
