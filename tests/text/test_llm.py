"""LLM backend against a fake OpenAI-compatible server on 127.0.0.1 (stdlib http.server in a thread)."""

from __future__ import annotations

import math

import pytest

from clinclip.errors import ClinclipError
from clinclip.text.llm import LLMClient, LLMConfig, LLMTextBackend, load_prompt, parse_sentences
from textgen_helpers import FakeServer


def _config(server, tmp_path, **kw) -> LLMConfig:
    return LLMConfig(base_url=server.url, model="fake-model", cache_dir=str(tmp_path / "cache"), backoff_s=0.01,
                     **kw)


def test_good_answers_invalid_json_fallback_and_retry(tmp_path):
    with FakeServer() as server:
        backend = LLMTextBackend(LLMClient(_config(server, tmp_path, max_concurrency=2)))
        out = backend.split_sentences(["No pleural effusion or pneumothorax.", "BADJSON here.",
                                       "FAIL500 Mild cardiomegaly."])
        assert out[0] == ["No pleural effusion.", "No pneumothorax."]
        assert out[1] is None  # invalid JSON: the caller uses the rules splitter
        assert out[2] == ["FAIL500 Mild cardiomegaly."]  # 500 first, then success after one retry
        assert backend.counts["split: invalid answer, rules used"] == 1
        assert backend.client.counts["retries"] == 1
        assert len(server.requests) == 4


def test_rate_limit_and_timeout_are_retried(tmp_path):
    with FakeServer() as server:
        backend = LLMTextBackend(LLMClient(_config(server, tmp_path, timeout_s=0.3)))
        out = backend.split_sentences(["RATE429 Mild cardiomegaly.", "SLOW No pneumothorax."])
        assert out == [["RATE429 Mild cardiomegaly."], ["SLOW No pneumothorax."]]
        assert backend.client.counts["retries"] == 2 and not backend.counts


def test_cache_hit_sends_no_second_request(tmp_path):
    with FakeServer() as server:
        client = LLMClient(_config(server, tmp_path))
        first = LLMTextBackend(client).split_sentences(["Mild cardiomegaly. Small left effusion."])
        n = len(server.requests)
        # A new client on the same cache folder: answered from disk.
        again = LLMTextBackend(LLMClient(_config(server, tmp_path))).split_sentences(
            ["Mild cardiomegaly. Small left effusion."])
        assert again == first and len(server.requests) == n == 1
        # Editing the prompt changes the key: asked again.
        prompts = tmp_path / "prompts"
        prompts.mkdir()
        for name in ("split_sentences.txt", "remove_temporal.txt", "remove_finding.txt"):
            (prompts / name).write_text(load_prompt({"split_sentences.txt": "split", "remove_temporal.txt": "temporal",
                                                     "remove_finding.txt": "remove"}[name]) + "\nBe brief.")
        LLMTextBackend(LLMClient(_config(server, tmp_path, prompts_dir=str(prompts)))).split_sentences(
            ["Mild cardiomegaly. Small left effusion."])
        assert len(server.requests) == 2


def test_concurrency_bound_is_respected(tmp_path):
    with FakeServer(delay=0.05) as server:
        client = LLMClient(_config(server, tmp_path, max_concurrency=3))
        reports = [f"Finding number {i}." for i in range(15)]
        out = LLMTextBackend(client).split_sentences(reports)
        assert all(o == [r] for o, r in zip(out, reports))
        assert 2 <= server.peak <= 3


def test_requests_failing_after_retries_fall_back(tmp_path):
    with FakeServer() as server:
        server.answer = lambda body: (503, "")
        backend = LLMTextBackend(LLMClient(_config(server, tmp_path, max_retries=2)))
        assert backend.split_sentences(["Mild cardiomegaly."]) == [None]
        assert len(server.requests) == 3
        assert backend.counts["split: request failed, rules used"] == 1


def test_auth_error_is_a_clear_config_error(tmp_path):
    with FakeServer() as server:
        server.answer = lambda body: (401, "")
        backend = LLMTextBackend(LLMClient(_config(server, tmp_path)))
        with pytest.raises(ClinclipError, match="fake-model.*401"):
            backend.split_sentences(["Mild cardiomegaly."])


def test_remove_finding_is_checked_by_the_labeler(tmp_path):
    """Pass (c) through the hard-negative code: a good answer is used; a wrong one (the finding kept) is
    rejected by the labeler and replaced by the rules removal, and counted."""
    from clinclip.observations import OBSERVATIONS
    from clinclip.text.hardneg import make_hard_negatives
    from clinclip.text.labeler import get_labeler

    labeler = get_labeler("rules")
    reports = [["Small right pleural effusion.", "Mild cardiomegaly."],
               ["Moderate cardiomegaly.", "Left pleural effusion."]]
    labels = labeler.label([" ".join(r) for r in reports])
    # Force the entity: only one positive each (effusion in report 0, cardiomegaly in report 1).
    labels[0, OBSERVATIONS.index("Cardiomegaly")] = 0.0
    labels[1, OBSERVATIONS.index("Pleural Effusion")] = 0.0
    with FakeServer() as server:
        backend = LLMTextBackend(LLMClient(_config(server, tmp_path)))
        out, counts = make_hard_negatives(reports, labels, seed=0, labeler=labeler, remover=backend.remove_finding)
    assert out[0].entity == "Pleural Effusion" and out[0].text_removed == "Mild cardiomegaly."
    assert out[1].entity == "Cardiomegaly" and out[1].text_removed == "Left pleural effusion."
    assert counts["remover answer rejected by the labeler: rules used"] == 1
    for hn in out:
        value = hn.negated_labels[OBSERVATIONS.index(hn.entity)]
        assert value == 0.0 or math.isnan(value)


def test_parse_sentences_schema():
    assert parse_sentences('{"sentences": ["A.", " ", "B."]}') == ["A.", "B."]
    assert parse_sentences('```json\n{"sentences": []}\n```') == []
    for bad in ("[]", '{"sentences": "A."}', '{"sentences": [1]}', '{"sentences": [], "extra": 1}', "nope", None):
        assert parse_sentences(bad) is None
