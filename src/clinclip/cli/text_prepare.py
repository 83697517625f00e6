"""CLI: ``clinclip text prepare`` (the whole pipeline over a corpus into one Parquet manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clinclip.cli import options
from clinclip.cli.errors import user_errors
from clinclip.outputs import check_output


def register(text_app: typer.Typer) -> None:
    """Add ``prepare`` (and related commands) to the ``text`` group."""
    text_app.command("prepare")(prepare)


@user_errors
def prepare(
    input: Path = typer.Option(..., "--input", "-i", help="Reports: a CSV, a Parquet file or a folder of .txt files "
                                                          "(e.g. a data manifest written by `clinclip data`)."),
    out: Path = typer.Option(..., "--out", "-o", help="The prepared manifest to write (Parquet)."),
    text_column: str = typer.Option("report", help="Column holding the raw report text."),
    labeler: str = options.labeler_option(),
    chexbert_checkpoint: Optional[Path] = options.CHEXBERT_CHECKPOINT,
    chexbert_tokenizer: Optional[Path] = options.CHEXBERT_TOKENIZER,
    device: str = typer.Option("cpu", "--device", help="--labeler chexbert: torch device (cpu, cuda)."),
    labels_file: Optional[Path] = options.LABELS_FILE,
    key_column: str = options.KEY_COLUMN,
    graph_backend: str = typer.Option("rules", help="rules | radgraph (needs the radgraph package and weights)."),
    radgraph_model: str = typer.Option("radgraph", help="--graph-backend radgraph: radgraph, radgraph-xl, ..."),
    radgraph_cache: Optional[Path] = typer.Option(None, help="--graph-backend radgraph: the model cache folder."),
    llm_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL (e.g. http://localhost:8000/v1) "
                                                     "for stages 2, 3 and 5; rules when absent."),
    llm_model: Optional[str] = typer.Option(None, help="Model name at --llm-url."),
    llm_concurrency: int = typer.Option(4, help="Requests in flight at most."),
    llm_timeout: float = typer.Option(120.0, help="Seconds to wait for an answer (read timeout)."),
    llm_connect_timeout: float = typer.Option(5.0, help="Seconds to wait for a connection."),
    llm_retries: int = typer.Option(5, help="Retries of a request answered 429 / 5xx or timed out while "
                                             "reading (a refused connection is not retried)."),
    llm_max_connection_failures: int = typer.Option(3, help="Connection failures in a row after which the "
                                                            "endpoint is given up and the rules backend is used "
                                                            "for the rest of the run."),
    llm_cache: Optional[Path] = typer.Option(None, help="LLM answer cache folder (default ~/.cache/clinclip/llm)."),
    llm_prompts: Optional[Path] = typer.Option(None, help="Folder with your own split_sentences.txt, "
                                                          "remove_temporal.txt and remove_finding.txt."),
    templates: Optional[Path] = typer.Option(None, help="Your own negation templates YAML "
                                                        "(default: clinclip/text/templates/negations.yaml)."),
    seed: int = typer.Option(0, help="Seed of the hard negatives (same input + seed -> same file)."),
    workers: int = typer.Option(1, help="Worker processes."),
    chunk_size: int = typer.Option(256, help="Rows per work unit."),
    max_report_chars: int = typer.Option(20_000, help="Longer reports are skipped (recorded in skip_reason)."),
    overwrite: bool = options.OVERWRITE,
) -> None:
    """Sections, single-entity sentences, labels, hard negatives and graphs for every report, written
    as one Parquet manifest; prints rows kept and skipped by reason."""
    from rich.console import Console
    from rich.table import Table

    from clinclip.errors import ClinclipError
    from clinclip.manifest import write_manifest
    from clinclip.text.io import read_reports
    from clinclip.text.prepare import PrepareOptions, format_summary, prepare_corpus_with_summary

    labeler_options = options.labeler_spec(labeler, chexbert_checkpoint, chexbert_tokenizer, device, labels_file,
                                           key_column)
    check_output(out, overwrite=overwrite, inputs=[input, labels_file], suffixes=(".parquet",))
    labeler = labeler.strip().lower()
    graph_options = {}
    if graph_backend == "radgraph":
        graph_options = {"model_type": radgraph_model,
                         "model_cache_dir": None if radgraph_cache is None else str(radgraph_cache)}
    llm = None
    if llm_url or llm_model:
        if not (llm_url and llm_model):
            raise ClinclipError("the LLM backend needs both --llm-url and --llm-model")
        from clinclip.text.llm import LLMConfig

        llm = LLMConfig(base_url=llm_url, model=llm_model, max_concurrency=llm_concurrency, timeout_s=llm_timeout,
                        connect_timeout_s=llm_connect_timeout, max_retries=llm_retries,
                        max_connection_failures=llm_max_connection_failures,
                        cache_dir=None if llm_cache is None else str(llm_cache),
                        prompts_dir=None if llm_prompts is None else str(llm_prompts))
    frame = read_reports(input, text_column)  # copies the text column into "report" (and reads folders)
    if labeler == "csv" and labeler_options:  # --labels-file: its 14 columns, joined on --key-column
        frame = _join_labels(frame, input, labeler_options)
        labeler_options = {}
    try:
        result, summary = prepare_corpus_with_summary(frame, PrepareOptions(
            text_column="report", labeler=labeler, labeler_options=labeler_options, graph_backend=graph_backend,
            graph_options=graph_options, llm=llm, seed=seed, workers=workers, chunk_size=chunk_size,
            max_report_chars=max_report_chars, templates_path=None if templates is None else str(templates)))
    except ClinclipError as err:
        raise ClinclipError(f"{input}: {err}") from err
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(result, out)
    table = Table(title=f"clinclip text prepare: {input} -> {out}")
    table.add_column("")
    table.add_column("count", justify="right")
    for key, value in format_summary(summary):
        table.add_row(key, str(value))
    Console().print(table)


def _join_labels(frame, input: Path, labeler_options: dict):
    """The input with the 14 observation columns of ``--labels-file`` (joined on ``--key-column``; a
    report whose key is not in the file gets blank labels)."""
    from clinclip.errors import ClinclipError
    from clinclip.observations import OBSERVATIONS
    from clinclip.text.labeler import get_labeler

    key = labeler_options["key_column"]
    column = key if key in frame.columns else "report_id"
    if column not in frame.columns:
        raise ClinclipError(f"{input}: no key column {key!r} to join with {labeler_options['path']} (--key-column)")
    labels = get_labeler("csv", **labeler_options).label(frame[column].astype(str).tolist())
    frame = frame.drop(columns=[c for c in OBSERVATIONS if c in frame.columns])
    for j, name in enumerate(OBSERVATIONS):
        frame[name] = labels[:, j]
    return frame
