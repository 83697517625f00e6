"""CLI commands of the evaluation part: ``clinclip eval TASK``, ``clinclip align build`` and
``clinclip report``. Heavy imports happen inside the commands so ``clinclip --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clinclip.cli import options
from clinclip.cli.errors import user_errors
from clinclip.cli.options import OVERWRITE
from clinclip.outputs import check_output

eval_app = typer.Typer(help="Evaluate a model (own checkpoint folder, HF CLIP/SigLIP folder or open_clip) "
                            "on a manifest: writes results JSON + a Markdown table.", no_args_is_help=True)
align_app = typer.Typer(help="CXR-Align benchmark files (the published PhysioNet format).", no_args_is_help=True)

MODEL = typer.Option(..., "--model", help="Model folder (own or HF CLIP/SigLIP), hub name, or open_clip spec.")
DATA = typer.Option(..., "--data", help="Manifest (Parquet/CSV) of the evaluation images.")
OUT = typer.Option(..., "--out", help="Results JSON to write (its table is written beside it as .md, .csv "
                                      "and .tex).")
SPLIT = typer.Option("test", "--split", help="Split to evaluate ('all' for every row).")
CACHE = typer.Option(None, "--cache-dir", show_default="$CLINCLIP_CACHE/embeddings or ~/.cache/clinclip/embeddings",
                     help="Embedding cache folder; 'none' disables it.")
BATCH = typer.Option(32, "--batch-size", help="Images/texts per encoder call.")
DEVICE = typer.Option(None, "--device", show_default="cuda when available, else cpu",
                      help="torch device for the encoder (and the CheXbert labeler).")
NAME = typer.Option(None, "--name", show_default="the run folder (RUN for RUN/model), else the model folder's name",
                    help="Model name shown in results and tables.")
PROMPTS = typer.Option("chexpert14", "--prompts",
                       help="Prompt file: a bundled name (chexpert14, chexpert_5x200, rsna, rsna_ab, siim, "
                            "vindr, cxr14) or a YAML path.")
DATASET = typer.Option(None, "--dataset-name", show_default="the manifest's file stem", help="Dataset name in tables.")


def _check_out(out: str, overwrite: bool, *inputs) -> None:
    """--out (JSON) and the Markdown table beside it: the output convention, before any work."""
    check_output(out, overwrite=overwrite, inputs=inputs, suffixes=(".json",), also=[Path(out).with_suffix(".md")])


def _labeler_options(labeler: str, chexbert_checkpoint, chexbert_tokenizer, device, labels_file, key_column):
    """(backend, options) from the shared labeler options; 'manifest' is the old name of csv without a file."""
    name = "csv" if labeler.strip().lower() == "manifest" else labeler
    return name.strip().lower(), options.labeler_spec(name, chexbert_checkpoint, chexbert_tokenizer, device,
                                                      labels_file, key_column)


def _store(model: str, cache_dir: Optional[str], batch_size: int, device: Optional[str]):
    from clinclip.evaluate.embeddings import default_cache_dir, open_store

    cache = None if cache_dir == "none" else (cache_dir or default_cache_dir())
    return open_store(model, cache_dir=cache, batch_size=batch_size, device=device)


def _frame(data: str, split: Optional[str]):
    from clinclip.manifest import drop_skipped, read_manifest, select_split

    frame = select_split(read_manifest(data), split, data)
    frame, skipped = drop_skipped(frame)
    return frame, skipped


def _finish(result: dict, model: str, data: str, split: str, out: str, name: Optional[str],
            skipped: dict | None = None) -> None:
    import datetime as dt

    from clinclip.evaluate.results import markdown_table, model_identity, write_result

    result.setdefault("skipped", {})
    for key, value in (skipped or {}).items():
        result["skipped"][key] = result["skipped"].get(key, 0) + value
    result.update({"model": str(model), "model_name": name or model_identity(model),
                   "data": str(data), "split": split,
                   "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    files = write_result(result, out)
    typer.echo(markdown_table(result))
    typer.echo(f"wrote {files.json} and its table as {', '.join(str(p) for p in files[1:])}")


@eval_app.command("zero-shot")
@user_errors
def zero_shot_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                  prompts: str = PROMPTS, cache_dir: Optional[str] = CACHE, batch_size: int = BATCH,
                  device: Optional[str] = DEVICE, name: Optional[str] = NAME,
                  overwrite: bool = OVERWRITE) -> None:
    """Zero-shot classification with a prompt file (AUC / accuracy, CXR-CLIP conventions)."""
    _check_out(out, overwrite, data)
    from clinclip.evaluate.classification import zero_shot
    from clinclip.evaluate.prompts import load_prompts

    prompt_set = load_prompts(prompts)
    frame, skipped = _frame(data, split)
    result = zero_shot(_store(model, cache_dir, batch_size, device), frame, prompt_set, data)
    _finish(result, model, data, split, out, name, skipped)


@eval_app.command("finetune")
@user_errors
def finetune_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                 prompts: str = PROMPTS,
                 method: str = typer.Option("linear", help="linear (probe on frozen features) or full."),
                 train_split: str = typer.Option("train", help="Split to train on."),
                 fractions: str = typer.Option("0.1,1.0", help="Train fractions (FT10, FT100)."),
                 seeds: str = typer.Option("0,1,2", help="Seeds; mean ± std over them."),
                 epochs: int = typer.Option(3, help="Epochs of full fine-tuning."),
                 lr: float = typer.Option(1e-5, help="Encoder learning rate of full fine-tuning."),
                 cache_dir: Optional[str] = CACHE, batch_size: int = BATCH, device: Optional[str] = DEVICE,
                 name: Optional[str] = NAME,
                 overwrite: bool = OVERWRITE) -> None:
    """Fine-tuned classification FT10/FT100: linear probe or full fine-tuning, several seeds."""
    _check_out(out, overwrite, data)
    from clinclip.errors import ClinclipError
    from clinclip.evaluate.finetune import finetune
    from clinclip.evaluate.prompts import load_prompts

    try:
        fraction_list = [float(f) for f in fractions.split(",") if f.strip()]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as err:
        raise ClinclipError(f"--fractions/--seeds must be comma-separated numbers: {err}") from err
    if not all(0 < f <= 1 for f in fraction_list):
        raise ClinclipError(f"--fractions must lie in (0, 1], got {fraction_list}")
    prompt_set = load_prompts(prompts)
    train, skipped = _frame(data, train_split)
    test, more = _frame(data, split)
    result = finetune(_store(model, cache_dir, batch_size, device), train, test, prompt_set, data, method=method,
                      fractions=fraction_list, seeds=seed_list, epochs=epochs, lr=lr, batch_size=batch_size)
    _finish(result, model, data, split, out, name, {**skipped, **more})


@eval_app.command("adversarial")
@user_errors
def adversarial_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                    prompts: str = PROMPTS, seed: int = typer.Option(0, help="Seed of the (X, Y) draw."),
                    pairs: str = typer.Option("one", help="one (X, Y) pair per image, or all pairs."),
                    cache_dir: Optional[str] = CACHE, batch_size: int = BATCH, device: Optional[str] = DEVICE,
                    name: Optional[str] = NAME,
                    overwrite: bool = OVERWRITE) -> None:
    """Adversarial prediction (ProbMed-style, paper Table 4): both queries right; chance 25%."""
    _check_out(out, overwrite, data)
    from clinclip.evaluate.adversarial import adversarial
    from clinclip.evaluate.prompts import load_prompts

    prompt_set = load_prompts(prompts)
    frame, skipped = _frame(data, split)
    result = adversarial(_store(model, cache_dir, batch_size, device), frame, prompt_set, data, seed=seed,
                         pairs=pairs)
    _finish(result, model, data, split, out, name, skipped)


@eval_app.command("normal-detection")
@user_errors
def normal_detection_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                         n_abnormal: int = typer.Option(2999, help="Abnormal reports per normal image."),
                         seed: int = typer.Option(0, help="Seed of the abnormal pool sample."),
                         labeler: str = options.labeler_option("csv", " Default: the manifest's columns."),
                         chexbert_checkpoint: Optional[Path] = options.CHEXBERT_CHECKPOINT,
                         chexbert_tokenizer: Optional[Path] = options.CHEXBERT_TOKENIZER,
                         labels_file: Optional[Path] = options.LABELS_FILE,
                         key_column: str = options.KEY_COLUMN,
                         dataset_name: Optional[str] = DATASET, cache_dir: Optional[str] = CACHE,
                         batch_size: int = BATCH, device: Optional[str] = DEVICE,
                         name: Optional[str] = NAME,
                         overwrite: bool = OVERWRITE) -> None:
    """Normal case detection (paper Table 3): own normal report vs 2,999 abnormal reports, top-1."""
    _check_out(out, overwrite, data, labels_file)
    from clinclip.evaluate.retrieval import normal_detection

    backend, labeler_options = _labeler_options(labeler, chexbert_checkpoint, chexbert_tokenizer, device,
                                                labels_file, key_column)
    frame, skipped = _frame(data, split)
    result = normal_detection(_store(model, cache_dir, batch_size, device), frame, data, n_abnormal=n_abnormal,
                              seed=seed, labeler=backend, dataset=dataset_name, labeler_options=labeler_options)
    _finish(result, model, data, split, out, name, skipped)


@eval_app.command("retrieval")
@user_errors
def retrieval_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                  labeler: str = options.labeler_option(),
                  chexbert_checkpoint: Optional[Path] = options.CHEXBERT_CHECKPOINT,
                  chexbert_tokenizer: Optional[Path] = options.CHEXBERT_TOKENIZER,
                  labels_file: Optional[Path] = options.LABELS_FILE,
                  key_column: str = options.KEY_COLUMN,
                  dataset_name: Optional[str] = DATASET, cache_dir: Optional[str] = CACHE,
                  batch_size: int = BATCH, device: Optional[str] = DEVICE, name: Optional[str] = NAME,
                  overwrite: bool = OVERWRITE) -> None:
    """Image -> report retrieval (paper Table 5): top-5, label P/R/F1, R@1/5/10 and mean rank."""
    _check_out(out, overwrite, data, labels_file)
    from clinclip.evaluate.retrieval import report_retrieval

    backend, labeler_options = _labeler_options(labeler, chexbert_checkpoint, chexbert_tokenizer, device,
                                                labels_file, key_column)
    frame, skipped = _frame(data, split)
    result = report_retrieval(_store(model, cache_dir, batch_size, device), frame, data, labeler=backend,
                              dataset=dataset_name, labeler_options=labeler_options)
    _finish(result, model, data, split, out, name, skipped)


@eval_app.command("cxr-align")
@user_errors
def cxr_align_cmd(model: str = MODEL,
                  benchmark: str = typer.Option(..., "--benchmark", help="CXR-Align JSON (official or built)."),
                  data: str = typer.Option(..., "--data", help="Manifest mapping image_id to image_path."),
                  out: str = OUT, split: str = typer.Option("all", "--split",
                                                            help="Manifest rows to search for image ids."),
                  swap_split: str = typer.Option("test", "--swap-split",
                                                 help="Split of --data whose studies give the swap control's "
                                                      "images ('all': every row; used whole when the "
                                                      "manifest has no split column)."),
                  train_manifest: Optional[str] = typer.Option(
                      None, "--train-manifest", show_default="baseline not computed",
                      help="Prepared manifest whose train split (text vs text_negated) trains the bag-of-words "
                           "baseline."),
                  seed: int = typer.Option(0, help="Seed of the swap control's draw."),
                  cache_dir: Optional[str] = CACHE, batch_size: int = BATCH, device: Optional[str] = DEVICE,
                  name: Optional[str] = NAME,
                  overwrite: bool = OVERWRITE) -> None:
    """CXR-Align (paper Table 6): task A (r vs r^n) and task B (r vs r^r) accuracy, beside the shortcut
    controls (image-blind A/B, swap control, longer-text and bag-of-words baselines)."""
    _check_out(out, overwrite, data, benchmark)
    from clinclip.evaluate.cxr_align import read_benchmark, score_benchmark, text_classifier_from_manifest
    from clinclip.manifest import drop_skipped, read_manifest, select_split

    bench = read_benchmark(benchmark)
    full = read_manifest(data)
    frame, _ = drop_skipped(select_split(full, split, data))
    swap_rows = select_split(full, swap_split if "split" in full.columns else "all", data)
    swap_frame, _ = drop_skipped(swap_rows)
    classifier = text_classifier_from_manifest(train_manifest, seed=seed) if train_manifest else None
    result = score_benchmark(_store(model, cache_dir, batch_size, device), bench, frame, data, benchmark,
                             swap_frame=swap_frame, text_classifier=classifier, seed=seed)
    if "split" not in full.columns:
        result["notes"].append(f"swap control: {data} has no split column; partners drawn from every row")
    _finish(result, model, data, split, out, name)


@eval_app.command("negation-retrieval")
@user_errors
def negation_retrieval_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                           prompts: str = PROMPTS, ks: str = typer.Option("5,10,50", help="k values."),
                           cache_dir: Optional[str] = CACHE, batch_size: int = BATCH,
                           device: Optional[str] = DEVICE, name: Optional[str] = NAME,
                           overwrite: bool = OVERWRITE) -> None:
    """Negation retrieval: precision@k of "X" and "no X" prompts and their gap."""
    _check_out(out, overwrite, data)
    from clinclip.evaluate.negation_retrieval import negation_retrieval
    from clinclip.evaluate.prompts import load_prompts

    k_list = [int(k) for k in ks.split(",") if k.strip()]
    frame, skipped = _frame(data, split)
    result = negation_retrieval(_store(model, cache_dir, batch_size, device), frame, load_prompts(prompts), data,
                                ks=k_list)
    _finish(result, model, data, split, out, name, skipped)


@eval_app.command("analyses")
@user_errors
def analyses_cmd(model: str = MODEL, data: str = DATA, out: str = OUT, split: str = SPLIT,
                 benchmark: Optional[str] = typer.Option(None, "--benchmark",
                                                         help="CXR-Align JSON for the head ablation "
                                                              "(skipped without it)."),
                 max_triplets: int = typer.Option(200, help="CXR-Align triplets used by the head ablation."),
                 ig_steps: int = typer.Option(32, help="Integrated Gradients steps."),
                 what: str = typer.Option("ig,tsne,heads", help="Analyses to run."),
                 cache_dir: Optional[str] = CACHE, batch_size: int = BATCH, device: Optional[str] = DEVICE,
                 name: Optional[str] = NAME,
                 overwrite: bool = OVERWRITE) -> None:
    """Text-encoder analyses: Integrated Gradients on negated sentences, t-SNE of affirmed vs negated
    sentences, attention-head ablation measured on CXR-Align A."""
    _check_out(out, overwrite, data, benchmark)
    from clinclip.evaluate.analyses import run_analyses

    store = _store(model, cache_dir, batch_size, device)
    frame = None
    bench = None
    if benchmark:
        from clinclip.evaluate.cxr_align import read_benchmark

        bench = read_benchmark(benchmark)
        frame, _ = _frame(data, split)
    result = run_analyses(store, which=[w.strip() for w in what.split(",") if w.strip()], benchmark=bench,
                          frame=frame, manifest=data, max_triplets=max_triplets, ig_steps=ig_steps)
    _finish(result, model, data, split, out, name)


@align_app.command("build")
@user_errors
def align_build_cmd(data: str = typer.Option(..., "--data", help="Prepared manifest (clinclip text prepare)."),
                    out: str = typer.Option(..., "--out", help="CXR-Align JSON to write."),
                    seed: int = typer.Option(0, help="Seed of the chosen entity, template and position."),
                    source: str = typer.Option("mimic", help="Top-level key naming the source dataset."),
                    split: str = typer.Option("test", help="Split to build from."),
                    labeler: str = typer.Option("rules", "--labeler", help="Labeler that verifies each r^n: rules or "
                                                                           "chexbert (with its two options)."),
                    chexbert_checkpoint: Optional[Path] = options.CHEXBERT_CHECKPOINT,
                    chexbert_tokenizer: Optional[Path] = options.CHEXBERT_TOKENIZER,
                    device: str = typer.Option("cpu", "--device", help="--labeler chexbert: torch device."),
                    counterfactuals: Optional[str] = typer.Option(
                        None, "--counterfactuals",
                        help="Phantom collection folder (or its phantom-counterfactuals.csv.gz): adds each "
                             "triplet's counterfactual image, scored as CF-order/CF-pair."),
                    overwrite: bool = OVERWRITE) -> None:
    """Build CXR-Align triplets (I, r, r^n) and (I, r, r^r) from the abnormal studies of a prepared split."""
    from clinclip.errors import ClinclipError
    from clinclip.evaluate.cxr_align import (attach_counterfactuals, build_benchmark, inserted_sentence_overlap,
                                             write_benchmark)
    from clinclip.manifest import read_manifest, select_split
    from clinclip.phantom import read_counterfactuals

    check_output(out, overwrite=overwrite, inputs=[data, counterfactuals], suffixes=(".json",))
    labeler_options = options.labeler_spec(labeler, chexbert_checkpoint, chexbert_tokenizer, device, None, "")
    if labeler.strip().lower() == "csv":
        raise ClinclipError("--labeler csv cannot verify new texts (r^n); use rules or chexbert")
    whole = read_manifest(data)
    frame = select_split(whole, split, data)
    bench, counts = build_benchmark(frame, source=source, seed=seed, labeler_backend=labeler.strip().lower(),
                                    manifest=data, labeler_options=labeler_options)
    if counterfactuals:
        attached = attach_counterfactuals(bench, read_counterfactuals(counterfactuals))
        typer.echo(f"counterfactual images attached to {attached} of {len(bench[source])} triplets")
    path = write_benchmark(bench, out)
    typer.echo(f"wrote {len(bench[source])} triplets to {path}")
    for reason, n in sorted(counts.items()):
        typer.echo(f"  {n:6d}  {reason}")
    if split != "train" and "split" in whole.columns:
        overlap = inserted_sentence_overlap(bench, select_split(whole, "train", data))
        typer.echo(f"inserted negation sentence occurs in a training report: {100 * overlap['share']:.1f}% "
                   f"of {overlap['n']} triplets (low = r^n recognisable by wording alone)")


def report_cmd(results: list[Path] = typer.Argument(..., help="Results JSON files of clinclip eval."),
               out: Path = typer.Option(..., "--out", help="HTML page to write."),
               title: str = typer.Option("clinclip evaluation report", help="Page title."),
               overwrite: bool = OVERWRITE) -> None:
    """Gather results into one offline HTML page laid out like the paper's Tables 2-6. Two different models
    under one name are told apart by their paths; two results for one table cell are refused."""
    from clinclip.evaluate.report import render_report
    from clinclip.evaluate.results import check_unique_cells, disambiguate_models, read_results

    check_output(out, overwrite=overwrite, inputs=results, suffixes=(".html", ".htm"))
    gathered = disambiguate_models(read_results(results))
    check_unique_cells(gathered)
    path = render_report(gathered, out, title=title)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the top-level app."""
    app.add_typer(eval_app, name="eval")
    app.add_typer(align_app, name="align")
    app.command("report")(user_errors(report_cmd))
