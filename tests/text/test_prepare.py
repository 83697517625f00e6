"""``prepare_corpus`` / ``clinclip text prepare``: columns, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS
from clinclip.manifest import PREPARED_COLUMNS, validate_graph, write_manifest
from clinclip.text.prepare import prepare_corpus, prepare_corpus_with_summary, PrepareOptions
from textgen_helpers import iu_frame


@pytest.fixture(scope="module")
def iu(iu_reports_path) -> pd.DataFrame:
    return iu_frame(iu_reports_path, 150)


def test_columns_and_content(iu):
    out = prepare_corpus(iu, progress=False)
    gold = [c for c in iu.columns if c != "report"]
    assert list(out.columns) == list(iu.columns) + list(PREPARED_COLUMNS)  # IU has no colliding columns
    pd.testing.assert_frame_equal(out[list(iu.columns)], iu)  # input columns kept untouched
    from clinclip.text.sentences import split_report

    kept = out[out["skip_reason"].isna()]
    assert len(kept) >= 0.95 * len(out)
    for _, row in kept.iterrows():
        assert row["sentences"] == split_report(row["report"])  # sections extracted once, same sentences
        assert row["text"] == " ".join(row["sentences"]) and row["text"]
        assert isinstance(row["text_negated"], str) and row["text_negated"] != row["text"]
        assert len(row["negated_labels"]) == 14
        validate_graph(json.loads(row["graph"]))
        validate_graph(json.loads(row["graph_negated"]))
        entity = row["negated_entity"]
        if row["negation_position"] == "pool":
            assert row["No Finding"] == 1.0 or not (row[list(OBSERVATIONS[:13])] == 1.0).any()
            assert pd.isna(row["text_removed"])
        else:
            assert row[entity] == 1.0 and row["negated_labels"][OBSERVATIONS.index(entity)] not in (1.0, -1.0)
    assert set(kept["negation_position"]) == {"beginning", "middle", "end", "pool"}
    assert gold  # the IU gold columns ride along unchanged


def test_same_input_and_seed_give_the_same_file(iu, tmp_path):
    a = prepare_corpus(iu, seed=5, progress=False)
    b = prepare_corpus(iu, seed=5, workers=2, chunk_size=40, progress=False)
    pd.testing.assert_frame_equal(a, b)  # chunks and processes do not change anything
    write_manifest(a, tmp_path / "a.parquet")
    write_manifest(b, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back = pd.read_parquet(tmp_path / "a.parquet")
    assert list(back.columns) == list(a.columns) and list(back["sentences"].iloc[0]) == a["sentences"].iloc[0]
    c = prepare_corpus(iu, seed=6, progress=False)
    assert not c["text_negated"].equals(a["text_negated"])


def test_bad_rows_are_kept_with_a_reason():
    frame = pd.DataFrame({"report": [
        "FINDINGS: Moderate cardiomegaly. Small left pleural effusion.",
        "",
        "   \n\t ",
        None,
        "FINDINGS: Mild cardiomegaly \u2014 no pneumothorax. IMPRESSION: \u201cCardiom\u00e9galie\u201d mild.",
        "FINDINGS: " + "No pneumothorax. " * 3200,  # ~54 kB
        "IMPRESSION: No pneumothorax. Small right pleural effusion.",
    ], "study_id": list("abcdefg")})
    out, summary = prepare_corpus_with_summary(frame, PrepareOptions(progress=False))
    reasons = [None if pd.isna(r) else r for r in out["skip_reason"]]
    assert reasons[0] is None and reasons[6] is None
    assert reasons[1] == reasons[2] == "empty report"
    assert reasons[3] == "missing report"
    assert reasons[4] is None and out["text"][4].isascii() and "cardiomegaly" in out["text"][4].lower()
    assert reasons[5].startswith("report too long")
    assert summary["skipped: empty report"] == 2 and summary["skipped: missing report"] == 1
    assert summary["event: non-ASCII characters normalised"] == 1
    assert summary["rows"] == 7 and summary["rows kept"] == 3
    skipped = out[out["skip_reason"].notna()]
    assert skipped["text_negated"].isna().all() and skipped["graph"].isna().all()
    assert np.isnan(skipped[list(OBSERVATIONS)].to_numpy()).all()


def test_given_labels_renamed_or_used_with_csv():
    frame = pd.DataFrame({"report": ["FINDINGS: Moderate cardiomegaly.", "FINDINGS: Small left pleural effusion.",
                                     "FINDINGS: No acute disease."]})
    for name in OBSERVATIONS:
        frame[name] = np.nan
    frame.loc[0, "Cardiomegaly"] = 1.0
    frame.loc[1, "Pleural Effusion"] = 1.0
    frame.loc[2, "No Finding"] = 1.0
    out = prepare_corpus(frame, progress=False)
    assert "given_Cardiomegaly" in out.columns and out["given_Cardiomegaly"][0] == 1.0
    assert out["Cardiomegaly"][0] == 1.0  # the labeler's own label
    frame["Fracture"] = frame["Fracture"].astype(object)
    frame.loc[1, "Fracture"] = "yes"  # not a label value
    out, summary = prepare_corpus_with_summary(frame, PrepareOptions(labeler="csv", progress=False))
    assert not any(c.startswith("given_") for c in out.columns)
    assert out["skip_reason"][1].startswith("unparseable label: Fracture")
    assert out["Cardiomegaly"][0] == 1.0 and out["negated_entity"][0] == "Cardiomegaly"
    assert out["negation_position"][2] == "pool" or out["skip_reason"][2]  # pool: report 0 (one finding)
    with pytest.raises(ClinclipError, match="missing"):
        prepare_corpus(frame.drop(columns=["Edema"]), labeler="csv", progress=False)


def test_missing_text_column_is_a_clear_error_and_an_empty_corpus_is_fine(tmp_path):
    with pytest.raises(ClinclipError, match="text column 'report' not found.*'notes'"):
        prepare_corpus(pd.DataFrame({"notes": ["x"]}), progress=False)
    empty = prepare_corpus(pd.DataFrame({"report": pd.Series([], dtype=object)}), progress=False)
    assert len(empty) == 0 and list(empty.columns) == ["report", *PREPARED_COLUMNS]
    write_manifest(empty, tmp_path / "empty.parquet")
    assert list(pd.read_parquet(tmp_path / "empty.parquet").columns) == list(empty.columns)


def test_cli(tmp_path, iu):
    src = tmp_path / "reports.csv"
    iu.head(30).to_csv(src, index=False)
    out = tmp_path / "out" / "prepared.parquet"
    result = CliRunner().invoke(app, ["text", "prepare", "--input", str(src), "--out", str(out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "rows kept" in result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 30 and list(frame.columns)[-len(PREPARED_COLUMNS):] == list(PREPARED_COLUMNS)
    assert len(prepare_corpus(src, seed=1, out=tmp_path / "api.parquet", progress=False)) == 30
    assert (tmp_path / "api.parquet").read_bytes() == out.read_bytes()  # Python API == CLI
    result = CliRunner().invoke(app, ["text", "prepare", "--input", str(src), "--out", str(out),
                                      "--text-column", "body", "--overwrite"])
    assert result.exit_code == 2 and "reports.csv" in result.output and "body" in result.output


def test_prepare_with_the_chexbert_labeler(tmp_path):
    """The CheXbert backend through the whole pipeline: a tiny checkpoint whose Cardiomegaly head always
    answers 'positive' labels every report so, and no hard negative can be verified: each such row is
    skipped with its reason and counted (never silently kept)."""
    from textgen_helpers import minilm_tokenizer_dir, save_tiny_chexbert

    tok = minilm_tokenizer_dir(tmp_path / "tok")
    vocab = sum(1 for _ in open(tok / "vocab.txt", encoding="utf-8"))
    ckpt = tmp_path / "chexbert.pth"
    save_tiny_chexbert(ckpt, vocab, positive_head=OBSERVATIONS.index("Cardiomegaly"))
    frame = pd.DataFrame({"report": ["FINDINGS: Moderate cardiomegaly.", "FINDINGS: Heart size is normal."]})
    out, summary = prepare_corpus_with_summary(frame, PrepareOptions(
        labeler="chexbert", progress=False, workers=2,
        labeler_options={"checkpoint_path": str(ckpt), "tokenizer_dir": str(tok), "num_attention_heads": 2}))
    assert (out["Cardiomegaly"] == 1.0).all()
    assert out["skip_reason"].str.startswith("no verifiable hard negative").all()
    assert summary["skipped: no verifiable hard negative"] == 2


def test_prepare_with_the_llm_backend(tmp_path):
    """Stages 2, 3 and 5 through a fake OpenAI-compatible server; rules where an answer is invalid."""
    from clinclip.text.llm import LLMConfig
    from textgen_helpers import FakeServer

    frame = pd.DataFrame({"report": [
        "FINDINGS: Moderate cardiomegaly. Unchanged small left pleural effusion. No pneumothorax.",
        "FINDINGS: No pleural effusion or pneumothorax.",
        "FINDINGS: BADJSON. Mild pulmonary edema.",
    ]})
    with FakeServer() as server:
        config = LLMConfig(base_url=server.url, model="fake-model", cache_dir=str(tmp_path / "cache"))
        out, summary = prepare_corpus_with_summary(frame, PrepareOptions(llm=config, progress=False))
        n_requests = len(server.requests)
        again = prepare_corpus(frame, llm=config, progress=False)  # all answers cached now
        assert len(server.requests) == n_requests
    pd.testing.assert_frame_equal(out, again)
    # (a) the fake splits on "." and "or"; (b) it drops the "Unchanged" sentence.
    assert out["sentences"][0] == ["Moderate cardiomegaly.", "No pneumothorax."]
    assert out["sentences"][1] == ["No pleural effusion.", "No pneumothorax."]
    assert summary["llm: split: invalid answer, rules used"] == 1
    assert "edema" in out["text"][2].lower()  # the rules splitter took over for the invalid answer
    assert out["negated_entity"][0] == "Cardiomegaly" and out["text_removed"][0] == "No pneumothorax."


SINGLE_FINDING = ["Small left pleural effusion.", "Mild cardiomegaly.", "Right lower lobe consolidation.",
                  "Small right pneumothorax.", "Mild pulmonary edema.", "Large left pleural effusion.",
                  "Moderate cardiomegaly.", "Left lower lobe consolidation.", "Large right pneumothorax.",
                  "Moderate pulmonary edema.", "Small right pleural effusion.", "Severe cardiomegaly."]
NORMAL = ["No acute cardiopulmonary process.", "The lungs are clear.", "Heart size is normal. The lungs are clear.",
          "No pneumothorax. No pleural effusion.", "Normal chest radiograph.", "Lungs are clear bilaterally."]


def _held_out_texts_in_training_negatives(out: pd.DataFrame) -> set[str]:
    split = out["split"] if "split" in out.columns else pd.Series("train", index=out.index)
    held_out = set(out.loc[split != "train", "text"])
    return held_out & set(out.loc[split == "train", "text_negated"].dropna())


def test_normal_report_pool_holds_train_reports_only():
    # 8 of the 12 single-finding reports are validate/test, 4 train; 30 normal train reports draw an r^n
    # from the pool: drawn over every split, some would be held-out texts (and without a split column
    # they are: the pool then is every row, as documented).
    splits = ["test", "test", "test", "validate", "validate", "validate", "train", "train", "train", "test",
              "validate", "train"]
    rows = [{"report": f"FINDINGS: {t}", "split": s} for t, s in zip(SINGLE_FINDING, splits)]
    rows += [{"report": f"FINDINGS: {t}", "split": "train"} for t in NORMAL] * 5
    frame = pd.DataFrame(rows)
    out = prepare_corpus(frame, progress=False)
    pooled = out[out["negation_position"] == "pool"]
    assert len(pooled) == 30 and pooled["text_negated"].notna().all()
    train_single = {t for t, s in zip(SINGLE_FINDING, splits) if s == "train"}
    assert set(pooled["text_negated"]) <= train_single
    assert not _held_out_texts_in_training_negatives(out)
    one_corpus = prepare_corpus(frame.drop(columns="split"), progress=False)
    assert set(one_corpus.loc[one_corpus["negation_position"] == "pool", "text_negated"]) - train_single


def test_no_held_out_report_text_in_any_training_negative_of_real_reports(iu):
    # real IU X-ray reports, split at random 60/20/20
    split = np.random.default_rng(0).choice(["train", "validate", "test"], size=len(iu), p=[0.6, 0.2, 0.2])
    out = prepare_corpus(iu.assign(split=split), progress=False)
    assert (out["negation_position"] == "pool").sum() > 10  # normal reports drew from the pool
    train_texts = set(out.loc[out["split"] == "train", "text"])
    # a held-out text that is not also some train report's text never appears as a training r^n
    assert not _held_out_texts_in_training_negatives(out) - train_texts
