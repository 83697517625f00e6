"""Reliability across every command: bad input is one line and exit 2 (never a traceback), outputs follow
one convention (inputs are never written over; an existing output only with --overwrite; the format
follows the suffix; a folder where a file is expected is an error), and the faults a new user met."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments: str) -> str:
    """Exit 2, one 'error:' line, no traceback, no exception other than the exit; returns the line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def all_commands() -> list[str]:
    """Every leaf command of the app, as 'group sub' names."""
    names = []

    def walk(command, prefix):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, prefix + [name])
        else:
            names.append(" ".join(prefix))

    walk(get_command(app), [])
    return sorted(names)


# --- every command, bad input: one line, exit 2 -------------------------------------------------------

MISSING = "missing"  # replaced by a path that does not exist
A_FILE = "a_file"  # replaced by an existing plain file

BAD_INPUT = {
    "prepare": ["prepare", "mimic-cxr", "--root", MISSING, "--out", "OUT/m.parquet"],
    "prepare-images": ["prepare-images", "--manifest", MISSING, "--out", "OUT/png"],
    "train": ["train", "clip", f"data.manifest={MISSING}", "--out", "OUT/run", "steps=1"],
    "text label": ["text", "label", "--input", MISSING, "--out", "OUT/l.csv"],
    "text prepare": ["text", "prepare", "--input", MISSING, "--out", "OUT/p.parquet"],
    "eval zero-shot": ["eval", "zero-shot", "--model", MISSING, "--data", MISSING, "--out", "OUT/r.json"],
    "eval finetune": ["eval", "finetune", "--model", MISSING, "--data", MISSING, "--out", "OUT/r.json"],
    "eval adversarial": ["eval", "adversarial", "--model", MISSING, "--data", MISSING, "--out", "OUT/r.json"],
    "eval normal-detection": ["eval", "normal-detection", "--model", MISSING, "--data", MISSING,
                              "--out", "OUT/r.json"],
    "eval retrieval": ["eval", "retrieval", "--model", MISSING, "--data", MISSING, "--out", "OUT/r.json"],
    "eval cxr-align": ["eval", "cxr-align", "--model", MISSING, "--benchmark", MISSING, "--data", MISSING,
                       "--out", "OUT/r.json"],
    "eval negation-retrieval": ["eval", "negation-retrieval", "--model", MISSING, "--data", MISSING,
                                "--out", "OUT/r.json"],
    "eval analyses": ["eval", "analyses", "--model", MISSING, "--data", MISSING, "--out", "OUT/r.json"],
    "align build": ["align", "build", "--data", MISSING, "--out", "OUT/b.json"],
    "report": ["report", MISSING, "--out", "OUT/r.html"],
    "phantom": ["phantom", "--out", A_FILE, "--n", "2"],
    "demo": ["demo", "--quick", "--out", A_FILE],
    "export": ["export", "--model", MISSING, "--format", "hf", "--out", "OUT/exported"],
}
NO_INPUT = {"version"}  # commands that read nothing


def _materialise(argv: list[str], tmp_path: Path) -> list[str]:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    out = []
    for arg in argv:
        arg = arg.replace(MISSING, str(tmp_path / "does-not-exist.parquet")) if MISSING in arg else arg
        arg = str(a_file) if arg == A_FILE else arg.replace("OUT", str(tmp_path / "out"))
        out.append(arg)
    return out


def test_every_command_has_a_bad_input_case():
    missing = set(all_commands()) - set(BAD_INPUT) - NO_INPUT
    assert not missing, f"add a bad-input case to BAD_INPUT for: {sorted(missing)}"


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_no_traceback(command, tmp_path):
    result = invoke(*_materialise(BAD_INPUT[command], tmp_path))
    line = assert_user_error(result)
    assert str(tmp_path) in line  # names the file


# --- the output convention ----------------------------------------------------------------------------

def _reports_csv(path: Path) -> Path:
    pd.DataFrame({"report": ["Small left pleural effusion.", "No acute disease."]}).to_csv(path, index=False)
    return path


# command -> (input file name, argv with IN / OUT placeholders); the input exists (and is a valid input
# where the command reads it before writing), OUT is the output file.
WRITERS = {
    "text label": ("r.csv", ["text", "label", "--input", "IN", "--out", "OUT"], ".csv"),
    "text prepare": ("r.csv", ["text", "prepare", "--input", "IN", "--out", "OUT"], ".parquet"),
    "prepare": ("t.csv", ["prepare", "csv", "--root", "ROOT", "--table", "IN", "--out", "OUT"], ".parquet"),
    "prepare-images": ("m.parquet", ["prepare-images", "--manifest", "IN", "--out", "ROOT/png",
                                     "--out-manifest", "OUT"], ".parquet"),
    "eval zero-shot": ("m.json", ["eval", "zero-shot", "--model", "M", "--data", "IN", "--out", "OUT"], ".json"),
    "eval retrieval": ("m.json", ["eval", "retrieval", "--model", "M", "--data", "IN", "--out", "OUT"], ".json"),
    "eval cxr-align": ("b.json", ["eval", "cxr-align", "--model", "M", "--benchmark", "IN", "--data", "IN",
                                  "--out", "OUT"], ".json"),
    "align build": ("m.json", ["align", "build", "--data", "IN", "--out", "OUT"], ".json"),
    "report": ("r.html", ["report", "IN", "--out", "OUT"], ".html"),
}


def _argv(spec, tmp_path: Path, inp: Path, out: Path, *extra) -> list[str]:
    return [a.replace("ROOT", str(tmp_path)).replace("IN", str(inp)).replace("OUT", str(out))
            .replace("M", str(tmp_path / "model")) if a in ("IN", "OUT", "M") or a.startswith("ROOT") else a
            for a in spec[1]] + list(extra)


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_input_is_never_written_over(command, tmp_path):
    spec = WRITERS[command]
    inp = _reports_csv(tmp_path / spec[0])
    before = inp.read_bytes()
    for extra in ((), ("--overwrite",)):
        result = invoke(*_argv(spec, tmp_path, inp, inp, *extra))
        assert_user_error(result, str(inp))
        assert inp.read_bytes() == before


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_existing_output_needs_overwrite(command, tmp_path):
    spec = WRITERS[command]
    inp = _reports_csv(tmp_path / ("in_" + spec[0]))
    out = tmp_path / f"old{spec[2]}"
    out.write_text("previous result")
    assert_user_error(invoke(*_argv(spec, tmp_path, inp, out)), str(out), "--overwrite")
    assert out.read_text() == "previous result"


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_folder_or_a_wrong_suffix_as_output_is_refused(command, tmp_path):
    spec = WRITERS[command]
    inp = _reports_csv(tmp_path / ("in_" + spec[0]))
    folder = tmp_path / f"dir{spec[2]}"
    folder.mkdir()
    assert_user_error(invoke(*_argv(spec, tmp_path, inp, folder)), str(folder), "folder")
    wrong = tmp_path / "out.xlsx"
    assert_user_error(invoke(*_argv(spec, tmp_path, inp, wrong)), str(wrong), spec[2])
    assert not wrong.exists()


def test_text_prepare_writes_parquet_only_to_a_parquet_name(tmp_path):
    inp = _reports_csv(tmp_path / "r.csv")
    assert_user_error(invoke("text", "prepare", "--input", inp, "--out", tmp_path / "x.csv"), ".parquet")
    assert not (tmp_path / "x.csv").exists()


def test_label_then_relabel_with_overwrite(tmp_path):
    inp = _reports_csv(tmp_path / "r.csv")
    out = tmp_path / "labels.csv"
    assert invoke("text", "label", "--input", inp, "--out", out).exit_code == 0
    assert_user_error(invoke("text", "label", "--input", inp, "--out", out), "already exists")
    assert invoke("text", "label", "--input", inp, "--out", out, "--overwrite").exit_code == 0


def test_skip_lists_of_two_versions_do_not_collide(tmp_path):
    from clinclip.data.prepare import skipped_path

    assert skipped_path(tmp_path / "m.v1.parquet") != skipped_path(tmp_path / "m.v2.parquet")
    assert skipped_path(tmp_path / "m.v1.parquet").name == "m.v1.skipped.csv"
    assert skipped_path(tmp_path / "m.csv").name == "m.skipped.csv"


def test_prepare_two_versions_keep_both_skip_lists(tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"image_path": ["a.png", "gone.png"], "report": ["r", "s"]}).to_csv(table, index=False)
    (tmp_path / "a.png").write_bytes(b"x")
    for version in ("v1", "v2"):
        result = invoke("prepare", "csv", "--root", tmp_path, "--table", table, "--report-column", "report",
                        "--out", tmp_path / f"m.{version}.parquet")
        assert result.exit_code == 0, result.output
    for version in ("v1", "v2"):
        assert len(pd.read_csv(tmp_path / f"m.{version}.skipped.csv")) == 1


def test_phantom_overwrite_removes_a_larger_previous_run(tmp_path):
    out = tmp_path / "ph"
    assert invoke("phantom", "--out", out, "--n", "6", "--workers", "0", "--size", "64").exit_code == 0
    assert invoke("phantom", "--out", out, "--n", "3", "--workers", "0", "--size", "64").exit_code == 2
    result = invoke("phantom", "--out", out, "--n", "3", "--workers", "0", "--size", "64", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*.txt"))) == 3 and len(list((out / "files").rglob("*.jpg"))) == 3
    truth = pd.read_csv(out / "phantom-truth.csv.gz")
    assert len(truth) == 3


def test_train_out_and_out_dir_are_one_option(tmp_path):
    result = invoke("train", "clip", "--out", tmp_path / "a", "out_dir=" + str(tmp_path / "b"), "--show-config")
    assert_user_error(result, "--out", "out_dir")
    result = invoke("train", "clip", "--out", tmp_path / "a", "--show-config")
    assert result.exit_code == 0 and f"out_dir: {tmp_path / 'a'}" in result.output
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "log.jsonl").write_text("{}")
    manifest = tmp_path / "m.parquet"
    manifest.write_bytes(b"x")
    result = invoke("train", "clip", "--out", tmp_path / "a", f"data.manifest={manifest}")
    assert_user_error(result, "previous run", "--overwrite")


@pytest.mark.parametrize("override, field", [("weight_decay=nan", "weight_decay"), ("eps=-1", "eps"),
                                             ("lr=inf", "lr"), ("loss.weights.i=nan", "weights")])
def test_train_config_values_are_checked_before_any_work(tmp_path, override, field):
    result = invoke("train", "clip", override, "--out", tmp_path / "run", "--show-config")
    assert_user_error(result, field)
    assert not (tmp_path / "run").exists()


# --- labelers: the same options on every labeling command, CheXbert through the CLI --------------------

LABELING = {"text label": ["text", "label"], "text prepare": ["text", "prepare"],
            "eval retrieval": ["eval", "retrieval"], "eval normal-detection": ["eval", "normal-detection"]}


@pytest.mark.parametrize("command", sorted(LABELING))
def test_labeler_options_have_one_name_everywhere(command):
    params = {opt for p in get_command(app).commands[LABELING[command][0]].commands[LABELING[command][1]].params
              for opt in p.opts}
    assert {"--labeler", "--chexbert-checkpoint", "--chexbert-tokenizer", "--labels-file", "--key-column",
            "--device", "--overwrite"} <= params


@pytest.mark.parametrize("command", sorted(LABELING))
def test_chexbert_without_its_files_is_a_clear_error(command, tmp_path):
    out = {"text label": "o.csv", "text prepare": "o.parquet"}.get(command, "o.json")
    result = invoke(*LABELING[command], "--labeler", "chexbert", "--input" if "text" in command else "--data",
                    tmp_path / "r.csv", "--out", tmp_path / out,
                    *(["--model", tmp_path / "m"] if "eval" in command else []))
    assert_user_error(result, "--chexbert-checkpoint", "--chexbert-tokenizer")


@pytest.fixture(scope="module")
def tiny_chexbert(tmp_path_factory):
    """A tiny random CheXbert in the published layout (module.bert.*, module.linear_heads.N.*) whose
    No Finding head always answers positive, and a tokenizer folder whose config.json gives its heads."""
    from textgen_helpers import minilm_tokenizer_dir, save_tiny_chexbert

    root = tmp_path_factory.mktemp("chexbert")
    tok = minilm_tokenizer_dir(root / "tok")
    (tok / "config.json").write_text(json.dumps({"num_attention_heads": 2}))
    vocab = sum(1 for _ in open(tok / "vocab.txt", encoding="utf-8"))
    ckpt = root / "chexbert.pth"
    save_tiny_chexbert(ckpt, vocab, positive_head=OBSERVATIONS.index("No Finding"))
    return ckpt, tok


def test_chexbert_through_text_label_and_text_prepare(tmp_path, tiny_chexbert):
    ckpt, tok = tiny_chexbert
    inp = _reports_csv(tmp_path / "r.csv")
    opts = ["--labeler", "chexbert", "--chexbert-checkpoint", ckpt, "--chexbert-tokenizer", tok]
    result = invoke("text", "label", "--input", inp, "--out", tmp_path / "l.csv", *opts)
    assert result.exit_code == 0, result.output
    assert (pd.read_csv(tmp_path / "l.csv")["No Finding"] == 1.0).all()
    result = invoke("text", "prepare", "--input", inp, "--out", tmp_path / "p.parquet", *opts)
    assert result.exit_code == 0, result.output
    assert (pd.read_parquet(tmp_path / "p.parquet")["No Finding"] == 1.0).all()


def test_csv_labels_file_through_text_label_and_text_prepare(tmp_path):
    inp = tmp_path / "r.csv"
    pd.DataFrame({"study_id": ["s1", "s2"], "report": ["Mild edema.", "Normal."]}).to_csv(inp, index=False)
    labels = tmp_path / "chexpert.csv"
    table = pd.DataFrame({"study_id": [1], **{o: [np.nan] for o in OBSERVATIONS}})
    table.loc[0, "Edema"] = 1.0
    table.to_csv(labels, index=False)
    opts = ["--labeler", "csv", "--labels-file", labels]
    assert invoke("text", "label", "--input", inp, "--out", tmp_path / "l.csv", *opts).exit_code == 0
    assert pd.read_csv(tmp_path / "l.csv")["Edema"].tolist()[0] == 1.0
    result = invoke("text", "prepare", "--input", inp, "--out", tmp_path / "p.parquet", *opts)
    assert result.exit_code == 0, result.output
    prepared = pd.read_parquet(tmp_path / "p.parquet").set_index("study_id")
    assert prepared.loc["s1", "Edema"] == 1.0


def test_eval_labels_reach_chexbert_with_its_options(tiny_chexbert):
    """The labels of eval retrieval / normal-detection come from the backend and options the CLI built."""
    from clinclip.cli.evaluate import _labeler_options
    from clinclip.evaluate.retrieval import report_labels

    ckpt, tok = tiny_chexbert
    backend, options = _labeler_options("chexbert", ckpt, tok, None, None, "study_id")
    labels = report_labels(["Mild edema.", "No acute disease."], None, backend, "m.parquet", options)
    assert (labels[:, OBSERVATIONS.index("No Finding")] == 1.0).all()
    assert _labeler_options("manifest", None, None, None, None, "study_id") == ("csv", {})


@pytest.mark.slow
def test_chexbert_through_eval_retrieval_and_normal_detection(tmp_path, tiny_chexbert):
    from clinclip.models import ClinClipModel
    from eval_helpers import write_gray_png

    ckpt, tok = tiny_chexbert
    model = tmp_path / "runs" / "a" / "model"
    ClinClipModel.from_preset("tiny", {"graph.enabled": False}).save_pretrained(model)
    rows = []
    for i in range(4):
        rows.append({"image_path": write_gray_png(tmp_path / "img" / f"{i}.png", 10 * (i + 1), size=40),
                     "image_id": f"i{i}", "study_id": f"s{i}", "split": "test", "report": f"Report number {i}.",
                     **{o: np.nan for o in OBSERVATIONS}, "No Finding": 1.0 if i < 2 else np.nan,
                     "Edema": np.nan if i < 2 else 1.0})
    data = tmp_path / "m.parquet"
    pd.DataFrame(rows).to_parquet(data)
    common = ["--model", model, "--data", data, "--cache-dir", "none", "--labeler", "chexbert",
              "--chexbert-checkpoint", ckpt, "--chexbert-tokenizer", tok]
    result = invoke("eval", "retrieval", *common, "--out", tmp_path / "retr.json")
    assert result.exit_code == 0, result.output
    retr = json.loads((tmp_path / "retr.json").read_text())
    assert retr["labeler"] == "chexbert" and retr["model_name"] == "a"  # the run folder names the model
    # CheXbert calls every report No Finding: the top-1 report always shares the true report's label
    assert retr["label_scores"]["precision"] == 1.0
    # the manifest's labels give 2 normal and 2 abnormal studies ...
    result = invoke("eval", "normal-detection", *common[:6], "--out", tmp_path / "ncd.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ncd.json").read_text())["metrics"]["n_normal"] == 2
    # ... CheXbert's call every study normal: no abnormal pool (a clear error, no traceback)
    result = invoke("eval", "normal-detection", *common, "--out", tmp_path / "ncd2.json")
    assert_user_error(result, "no abnormal report")


# --- results name models by a stable identity; report tells two models apart ---------------------------

def test_model_identity_is_the_run_folder():
    from clinclip.evaluate.results import model_identity

    assert model_identity("runs/a/model") == "a" and model_identity("runs/b/model/") == "b"
    assert model_identity("/models/chexagent-siglip") == "chexagent-siglip"


def test_report_tells_two_models_of_one_name_apart_and_refuses_duplicates(tmp_path):
    def result(model, name, value):
        return {"task": "adversarial", "dataset": "d", "model": model, "model_name": name,
                "metrics": {"accuracy": value}, "table": {"columns": [], "rows": []}}

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result("runs/a/model", "model", 0.111)))
    b.write_text(json.dumps(result("runs/b/model", "model", 0.222)))
    out = tmp_path / "r.html"
    assert invoke("report", a, b, "--out", out).exit_code == 0
    page = out.read_text()
    assert "11.1" in page and "22.2" in page and "model (a/model)" in page and "model (b/model)" in page
    c = tmp_path / "c.json"
    c.write_text(json.dumps(result("runs/a/model", "model", 0.333)))
    assert_user_error(invoke("report", a, c, "--out", tmp_path / "r2.html"), "c.json", "a.json")


# --- LLM endpoint: fail fast ------------------------------------------------------------------------

def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_llm_refused_connection_is_not_retried_and_gives_up_once(tmp_path, capsys):
    pytest.importorskip("httpx")
    from clinclip.text.llm import LLMClient, LLMConfig, LLMTextBackend

    config = LLMConfig(base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="m", cache_dir=str(tmp_path),
                       max_retries=5, backoff_s=5.0, max_concurrency=1, max_connection_failures=3)
    client = LLMClient(config)
    out = LLMTextBackend(client).split_sentences([f"Report {i}. Mild edema." for i in range(8)])
    assert out == [None] * 8  # every report falls back to the rules backend
    assert client.counts["requests"] == 3  # one per report until it gave up; no retries of a refused connection
    assert client.counts.get("retries", 0) == 0
    assert client.counts["requests not sent (endpoint unreachable)"] == 5
    assert capsys.readouterr().err.count("unreachable") == 1  # said once


def test_llm_options_reach_the_cli(tmp_path):
    pytest.importorskip("httpx")
    inp = _reports_csv(tmp_path / "r.csv")
    result = invoke("text", "prepare", "--input", inp, "--out", tmp_path / "p.parquet",
                    "--llm-url", f"http://127.0.0.1:{_closed_port()}/v1", "--llm-model", "m",
                    "--llm-cache", tmp_path / "cache", "--llm-retries", "0", "--llm-connect-timeout", "1",
                    "--llm-timeout", "5", "--llm-max-connection-failures", "1")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: LLM endpoint") == 1  # said once
    assert_user_error(invoke("text", "prepare", "--input", inp, "--out", tmp_path / "q.parquet", "--llm-url",
                             "http://x/v1", "--llm-model", "m", "--llm-timeout", "0"), "timeout_s")


# --- text inputs ----------------------------------------------------------------------------------

def test_a_binary_txt_is_skipped_with_its_reason(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "s1.txt").write_text("FINDINGS: Small left effusion.")
    (folder / "s2.txt").write_bytes(bytes(range(256)) * 4)  # e.g. an image saved under a .txt name
    (folder / "s3.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x01\x02\x03\xff\xfe" * 10)  # no NUL, still binary
    out = tmp_path / "l.csv"
    result = invoke("text", "label", "--input", folder, "--out", out)
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert labels[list(OBSERVATIONS)].isna().all(axis=1).sum() == 2  # blank labels: not "No Finding"
    assert "s2.txt: binary file" in result.output and "s3.txt: binary file" in result.output
    result = invoke("text", "prepare", "--input", folder, "--out", tmp_path / "p.parquet")
    prepared = pd.read_parquet(tmp_path / "p.parquet")
    assert prepared["skip_reason"].fillna("").str.contains("binary file").sum() == 2


@pytest.mark.parametrize("line", [2, 3])
def test_a_csv_row_with_an_extra_field_is_an_error_naming_the_line(tmp_path, line):
    rows = ["id,report", "1,Small effusion.", "2,No acute disease."]
    rows[line - 1] += ",stray"
    path = tmp_path / "r.csv"
    path.write_text("\n".join(rows) + "\n")
    for command in (["text", "label"], ["text", "prepare"]):
        result = invoke(*command, "--input", path, "--out", tmp_path / ("o.csv" if "label" in command else "o.parquet"))
        assert_user_error(result, str(path), f"line {line}")


def test_a_header_only_or_empty_csv_is_an_error(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("report\n")
    assert_user_error(invoke("text", "label", "--input", path, "--out", tmp_path / "o.csv"), "no rows")
    path.write_text("")
    assert_user_error(invoke("text", "label", "--input", path, "--out", tmp_path / "o.csv"), "empty")


def test_a_manifest_row_with_an_extra_field_is_an_error(tmp_path):
    from clinclip.manifest import read_manifest

    path = tmp_path / "m.csv"
    path.write_text("image_path,report\na.png,Small effusion,oops\nb.png,Normal\n")
    with pytest.raises(ClinclipError, match="line 2"):
        read_manifest(path)


# --- means over classes say what they left out ----------------------------------------------------------

def _unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


A, B, C = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)


def manifest(tmp_path, rows: list[dict]) -> str:
    """A manifest CSV of constant-grey images (pixel value -> embedding A, B or C) and the given columns."""
    from eval_helpers import write_gray_png

    records = []
    for i, row in enumerate(rows):
        rec = {c: np.nan for c in OBSERVATIONS}
        rec.update({"image_id": f"img{i}", "study_id": f"s{i}", "split": "test",
                    "image_path": write_gray_png(tmp_path / "img" / f"img{i}.png", row["pixel"])})
        rec.update({k: v for k, v in row.items() if k != "pixel"})
        records.append(rec)
    path = tmp_path / "manifest.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return str(path)


def store(text_table):
    from eval_helpers import KeyedEncoder, pil_loader

    from clinclip.evaluate.embeddings import EmbeddingStore

    return EmbeddingStore(KeyedEncoder({10: A, 20: B, 30: C}, text_table), "test-model", cache_dir=None,
                          image_loader=pil_loader, progress=False)


def frame_of(path):
    from clinclip.manifest import read_manifest

    return read_manifest(path)


def test_zero_shot_mean_names_the_classes_left_out(tmp_path):
    from clinclip.evaluate.classification import zero_shot
    from clinclip.evaluate.prompts import load_prompts
    from clinclip.evaluate.results import markdown_table

    data = manifest(tmp_path, [{"pixel": 10, "Edema": 1, "Atelectasis": 0},
                               {"pixel": 20, "Edema": 0, "Atelectasis": 0}])
    prompts = tmp_path / "p.yaml"
    prompts.write_text("name: toy\nkind: binary\nclasses:\n"
                       "  Edema: {positive: [edema], negative: [no edema]}\n"
                       "  Atelectasis: {positive: [atelectasis], negative: [no atelectasis]}\n")
    result = zero_shot(store({"edema": A, "no edema": B, "atelectasis": A, "no atelectasis": B}),
                       frame_of(data), load_prompts(str(prompts)), data)
    assert result["classes_left_out_of_mean"] == {"Atelectasis": "no positive label"}
    assert result["metrics"]["auc"] == result["per_class"]["Edema"]["auc"]
    table = markdown_table(result)
    assert "mean of 1 of 2 classes (left out: Atelectasis: no positive label)" in table


# --- normal detection: the documented definition, every study counted -------------------------------

def test_normal_detection_follows_no_finding_and_counts_every_study(tmp_path):
    from clinclip.evaluate.retrieval import normal_detection

    data = manifest(tmp_path, [
        {"pixel": 20, "text": "normal one", "No Finding": 1},
        {"pixel": 20, "text": "normal with a line", "No Finding": 1, "Support Devices": 1},
        {"pixel": 10, "text": "effusion", "Pleural Effusion": 1},
        {"pixel": 30, "text": "unremarkable but unlabelled"},  # neither normal nor abnormal
    ])
    texts = {"normal one": B, "normal with a line": B, "effusion": A, "unremarkable but unlabelled": C}
    result = normal_detection(store(texts), frame_of(data), data)
    assert result["metrics"]["n_normal"] == 2  # Support Devices does not make a study abnormal
    assert result["skipped"] == {"neither normal (No Finding = 1) nor abnormal (a positive finding)": 1}
    assert 2 + result["metrics"]["n_abnormal_reports"] + sum(result["skipped"].values()) == 4


# --- the embedding cache under concurrent runs ---------------------------------------------------------

_WRITER = """
import sys, numpy as np
sys.path[:0] = [{tests!r}]
from eval_helpers import KeyedEncoder, pil_loader, unit
from clinclip.evaluate.embeddings import EmbeddingStore
paths = {paths!r}
table = {{v: unit(v, 1.0, 2.0) for v in range(1, 41)}}
for round in range(8):
    store = EmbeddingStore(KeyedEncoder(table, {{}}), "m", cache_dir={cache!r}, image_loader=pil_loader,
                           progress=False, batch_size=4)
    order = paths[int(sys.argv[1])::2] + paths  # each process starts on other rows, then asks for all
    emb, ok, _ = store.image_embeddings(order[: 10 + round], manifest="m.csv")
    for p, e in zip(order, emb):
        v = int(p.rsplit("/", 1)[1].split(".")[0])
        assert np.allclose(e, table[v]), (p, e)
"""


def test_embedding_cache_entries_stay_aligned_when_two_runs_interleave(tmp_path):
    """Two stores (two runs) growing one cache entry in turn: every read gives each path its own
    embedding, and the entry stays one file (the concurrent case is the slow test below)."""
    from eval_helpers import KeyedEncoder, pil_loader, unit, write_gray_png

    from clinclip.evaluate.embeddings import EmbeddingStore

    table = {v: unit(v, 1.0, 2.0) for v in range(1, 13)}
    paths = [write_gray_png(tmp_path / "img" / f"{v}.png", v) for v in range(1, 13)]
    stores = [EmbeddingStore(KeyedEncoder(table, {}), "m", cache_dir=tmp_path / "c", image_loader=pil_loader,
                             progress=False) for _ in range(2)]
    for step, chunk in enumerate([paths[0:4], paths[8:12], paths[2:8], paths]):
        emb, ok, _ = stores[step % 2].image_embeddings(chunk, manifest="m.csv")
        assert ok.all()
        for p, e in zip(chunk, emb):
            assert np.allclose(e, table[int(Path(p).stem)])
    assert len(list((tmp_path / "c").rglob("*.npz"))) == 1


@pytest.mark.slow
def test_embedding_cache_is_consistent_under_two_concurrent_processes(tmp_path):
    from eval_helpers import write_gray_png

    paths = [write_gray_png(tmp_path / "img" / f"{v}.png", v) for v in range(1, 41)]
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(tests=str(Path(__file__).parents[1]), paths=paths, cache=str(tmp_path / "c")))
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    files = list((tmp_path / "c").rglob("*.npz"))
    entries = [f for f in files if not f.name.startswith(".")]
    assert len(entries) == 1 and len(files) == 1  # one entry, no temporary file left behind
    with np.load(entries[0]) as entry:
        assert len(entry["paths"]) == len(entry["embeddings"])


# --- help, version, demo --quick ------------------------------------------------------------------

def test_help_texts_hold_no_markup_that_rich_would_hide():
    """Rich reads '[...]' in a help text as markup and drops it (e.g. '[default: ...]')."""
    import re

    def walk(command, name):
        if hasattr(command, "commands"):
            for sub_name, sub in command.commands.items():
                yield from walk(sub, f"{name} {sub_name}")
        else:
            for p in command.params:
                yield name, p

    for name, param in walk(get_command(app), "clinclip"):
        assert not re.search(r"\[[a-z/ ]+[:\]]", getattr(param, "help", None) or ""), (name, param.name)


def test_defaults_are_shown_in_help():
    result = runner.invoke(app, ["eval", "zero-shot", "--help"], env={"COLUMNS": "200"})
    assert "default: ($CLINCLIP_CACHE/embeddings" in result.output and "default: (the run folder" in result.output


def test_version_option():
    from clinclip import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == __version__
