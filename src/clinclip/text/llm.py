"""Optional LLM backend for pipeline stages 2, 3 and 5 (docs/text-pipeline.md, "LLM backend"), over any OpenAI-compatible chat
endpoint: a local vLLM or Ollama server, or a hosted one.

Three passes, each an editable prompt file in ``clinclip/text/prompts/`` (or a folder of your own with
the same file names):

- ``split_sentences.txt`` (a): report text -> sentences that each state one finding or one absence;
- ``remove_temporal.txt`` (b): sentences -> the same without comparisons with prior studies;
- ``remove_finding.txt`` (c): sentences + a finding -> the sentences not about it (the negation sentence
  is then inserted by ``clinclip.text.hardneg``, not by the model).

Every answer must be JSON ``{"sentences": [str, ...]}`` (requested with ``response_format``, validated
here). Requests run at temperature 0 on a bounded thread pool, retry with exponential backoff on 429, 5xx
and read timeouts, and are cached on disk under a key hashing (model, prompt file content,
input). An answer that fails validation, or a request that still fails after the retries, falls back to the
rules backend. A refused or timed-out connection is not retried (nothing is listening: waiting will not
help); after ``max_connection_failures`` of them in a row the endpoint is given up for the rest of the run
(said once on stderr, counted) and every remaining request falls back at once. Pass (c) is also checked by
the labeler (the removed entity must no longer be positive), and
every fallback is counted in ``LLMTextBackend.counts``.

``httpx`` is an optional dependency (``pip install clinclip[llm]``); it is imported only here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from clinclip.errors import ClinclipError
from clinclip.files import write_text_atomic
from clinclip.text.temporal import remove_temporal

PROMPT_FILES = {"split": "split_sentences.txt", "temporal": "remove_temporal.txt", "remove": "remove_finding.txt"}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"sentences": {"type": "array", "items": {"type": "string"}}},
    "required": ["sentences"],
    "additionalProperties": False,
}
# What each CheXpert observation covers, given to pass (c) (the paper's prompt spelled out two of them).
FINDING_MEANS = {
    "Enlarged Cardiomediastinum": "a widened or enlarged mediastinum or cardiomediastinal silhouette",
    "Cardiomegaly": "an enlarged heart or cardiac silhouette",
    "Lung Opacity": "any lung opacity, opacification, density, infiltrate, haziness or airspace disease",
    "Lung Lesion": "a nodule or a mass in the lung",
    "Edema": "pulmonary edema, vascular congestion, interstitial edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia or infection",
    "Atelectasis": "atelectasis, collapse, volume loss",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion or pleural fluid",
    "Pleural Other": "pleural thickening, pleural plaque, pleural fibrosis or scarring",
    "Fracture": "a fracture of any bone",
    "Support Devices": "lines, tubes, catheters, pacemakers, wires, clips, valves, stents and other devices",
}
_RETRY_STATUS = {429, 500, 502, 503, 504}
_CONFIG_STATUS = {401, 403, 404}
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")


@dataclass
class LLMConfig:
    """Where and how to ask. ``api_key`` defaults to the environment variable ``CLINCLIP_LLM_API_KEY``
    (then ``OPENAI_API_KEY``); local servers need none."""

    base_url: str
    model: str
    api_key: str | None = None
    prompts_dir: str | None = None
    cache_dir: str | None = None  # None: ~/.cache/clinclip/llm
    max_concurrency: int = 4
    max_retries: int = 5  # retries of a 429 / 5xx answer or a read timeout (not of a refused connection)
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 120.0  # read timeout: an answer may take long on a busy server
    connect_timeout_s: float = 5.0
    max_connection_failures: int = 3  # in a row; then the endpoint is not called again in this run

    def __post_init__(self):
        for key in ("max_concurrency", "max_connection_failures"):
            if getattr(self, key) < 1:
                raise ClinclipError(f"LLM option {key} = {getattr(self, key)}: expected an integer >= 1")
        if self.max_retries < 0:
            raise ClinclipError(f"LLM option max_retries = {self.max_retries}: expected an integer >= 0")
        for key in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ClinclipError(f"LLM option {key} = {value!r}: expected a number of seconds > 0")
    temperature: float = 0.0
    response_format: str = "json_object"  # or "json_schema" where the server supports it, or "none"


class RequestFailed(Exception):
    """A request that still failed after the retries (counted, then the rules backend is used)."""


def load_prompt(name: str, prompts_dir: str | Path | None = None) -> str:
    """The text of prompt ``name`` (``split``, ``temporal`` or ``remove``)."""
    filename = PROMPT_FILES[name]
    if prompts_dir is None:
        return resources.files("clinclip.text").joinpath("prompts", filename).read_text("utf-8")
    path = Path(prompts_dir) / filename
    if not path.is_file():
        raise ClinclipError(f"LLM prompt file not found: {path} (a prompts folder needs {sorted(PROMPT_FILES.values())})")
    return path.read_text("utf-8")


def parse_sentences(content: str | None) -> list[str] | None:
    """Validate an answer against ``ANSWER_SCHEMA``: the list of sentences, or None when invalid."""
    if content is None:
        return None
    try:
        data = json.loads(_FENCE.sub("", content))
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or set(data) != {"sentences"} or not isinstance(data["sentences"], list):
        return None
    if not all(isinstance(s, str) for s in data["sentences"]):
        return None
    return [s.strip() for s in data["sentences"] if s.strip()]


class LLMClient:
    """Chat completions with a disk cache, bounded concurrency and retries. ``counts`` records requests,
    cache hits, retries and failures."""

    def __init__(self, config: LLMConfig):
        try:
            import httpx
        except ImportError as err:
            raise ClinclipError("the LLM backend needs httpx: pip install 'clinclip[llm]' (or pip install httpx)") from err
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.prompts = {name: load_prompt(name, config.prompts_dir) for name in PROMPT_FILES}
        self.cache_dir = Path(config.cache_dir or Path.home() / ".cache" / "clinclip" / "llm")
        key = config.api_key or os.environ.get("CLINCLIP_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=config.max_concurrency,
                              max_keepalive_connections=config.max_concurrency)
        self._httpx = httpx
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._http = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._connection_failures = 0  # in a row
        self.unreachable = False  # set after max_connection_failures: no request is sent any more

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def cache_key(self, prompt: str, payload: dict) -> str:
        blob = json.dumps([self.config.model, self.prompts[prompt], payload], sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def ask(self, prompt: str, payload: dict) -> str:
        """The answer's content for one input (from the cache when present). Raises RequestFailed."""
        key = self.cache_key(prompt, payload)
        path = self._cache_path(key)
        if path.is_file():
            self._count("cache hits")
            return json.loads(path.read_text("utf-8"))["content"]
        content = self._request(prompt, payload)
        # atomic: parallel runs never read a half-written entry
        write_text_atomic(path, json.dumps({"model": self.config.model, "prompt": prompt, "content": content}))
        return content

    def _body(self, prompt: str, payload: dict) -> dict:
        body: dict[str, Any] = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "messages": [{"role": "system", "content": self.prompts[prompt]},
                         {"role": "user", "content": json.dumps(payload, ensure_ascii=False)}],
        }
        if self.config.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif self.config.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "sentences", "schema": ANSWER_SCHEMA, "strict": True}}
        return body

    def _connection_failed(self, err: Exception) -> None:
        """Count a connection that could not be made; give the endpoint up after too many in a row."""
        with self._lock:
            self._connection_failures += 1
            self.counts["connection failures"] += 1
            give_up = not self.unreachable and self._connection_failures >= self.config.max_connection_failures
            if give_up:
                self.unreachable = True
        if give_up:
            print(f"warning: LLM endpoint {self.url} unreachable ({self._connection_failures} connection failures "
                  f"in a row, last: {type(err).__name__}: {err}); the rules backend is used for the rest of "
                  "this run", file=sys.stderr, flush=True)
        raise RequestFailed(f"{self.url}: {type(err).__name__}: {err}")

    def _request(self, prompt: str, payload: dict) -> str:
        body = self._body(prompt, payload)
        httpx = self._httpx
        last = ""
        for attempt in range(self.config.max_retries + 1):
            if self.unreachable:
                self._count("requests not sent (endpoint unreachable)")
                raise RequestFailed(f"{self.url}: unreachable")
            if attempt:
                self._count("retries")
            self._count("requests")
            retry_after = None
            try:
                response = self._http.post(self.url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                self._connection_failed(err)  # nothing listening: retrying will not help
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                with self._lock:
                    self._connection_failures = 0
                if response.status_code == 200:
                    try:
                        return response.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        self._count("malformed responses")
                        return ""  # no usable content: validation fails and the rules backend is used
                if response.status_code in _CONFIG_STATUS:
                    raise ClinclipError(f"LLM endpoint {self.url} (model '{self.config.model}') answered "
                                        f"{response.status_code}: {response.text[:300]}")
                if response.status_code not in _RETRY_STATUS:
                    self._count(f"http {response.status_code}")
                    raise RequestFailed(f"HTTP {response.status_code}: {response.text[:200]}")
                last = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
            if attempt < self.config.max_retries:
                delay = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** attempt)
                if retry_after:
                    try:
                        delay = min(self.config.max_backoff_s, max(delay, float(retry_after)))
                    except ValueError:
                        pass
                time.sleep(delay)
        self._count("requests failed after retries")
        raise RequestFailed(f"{self.url}: {last} after {self.config.max_retries} retries")

    def ask_many(self, prompt: str, payloads: Sequence[dict], progress: bool = False) -> list[str | None]:
        """Answers in input order; None where the request failed after the retries."""

        def one(payload):
            try:
                return self.ask(prompt, payload)
            except RequestFailed:
                return None

        if not payloads:
            return []
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            results = pool.map(one, payloads)
            if progress:
                from tqdm import tqdm

                results = tqdm(results, total=len(payloads), desc=f"LLM {prompt}", unit="report")
            return list(results)


class LLMTextBackend:
    """The three LLM passes with validation and the rules fallback. ``counts`` says how often each pass
    fell back (and why)."""

    def __init__(self, client: LLMClient, progress: bool = False):
        self.client = client
        self.progress = progress
        self.counts: Counter = Counter()

    @classmethod
    def from_config(cls, config: LLMConfig, progress: bool = False) -> "LLMTextBackend":
        return cls(LLMClient(config), progress=progress)

    def split_sentences(self, texts: Sequence[str]) -> list[list[str] | None]:
        """Pass (a). None for a text whose answer failed validation (the caller uses the rules splitter)."""
        answers = self.client.ask_many("split", [{"report": t} for t in texts], self.progress)
        out = []
        for text, answer in zip(texts, answers):
            sentences = parse_sentences(answer)
            if sentences is None or (not sentences and re.search(r"[A-Za-z]{3}", text)):
                self.counts["split: invalid answer, rules used" if answer is not None
                            else "split: request failed, rules used"] += 1
                sentences = None
            out.append(sentences)
        return out

    def remove_temporal(self, sentence_lists: Sequence[Sequence[str]]) -> list[list[str]]:
        """Pass (b); falls back to ``clinclip.text.temporal.remove_temporal`` per report."""
        answers = self.client.ask_many("temporal", [{"sentences": list(s)} for s in sentence_lists], self.progress)
        out = []
        for sentences, answer in zip(sentence_lists, answers):
            kept = parse_sentences(answer)
            if kept is None or len(kept) > 2 * len(sentences) + 1:
                self.counts["temporal: invalid answer, rules used" if answer is not None
                            else "temporal: request failed, rules used"] += 1
                kept = list(remove_temporal(list(sentences)))
            out.append(kept)
        return out

    def remove_finding(self, items: Sequence[tuple[Sequence[str], str]]) -> list[list[str] | None]:
        """Pass (c), in the shape of ``hardneg.SentenceRemover``: None where the answer is invalid (the
        hard-negative code then removes by rules, and also replaces answers the labeler rejects)."""
        payloads = [{"sentences": list(s), "finding": e, "finding_means": FINDING_MEANS.get(e, e)} for s, e in items]
        answers = self.client.ask_many("remove", payloads, self.progress)
        out = []
        for (sentences, _), answer in zip(items, answers):
            kept = parse_sentences(answer)
            if kept is None or len(kept) >= len(sentences):
                self.counts["remove: invalid answer, rules used" if answer is not None
                            else "remove: request failed, rules used"] += 1
                kept = None
            out.append(kept)
        return out

    def summary(self) -> Counter:
        return self.counts + Counter({f"http: {k}": v for k, v in self.client.counts.items()})
