"""Report-graph encoder: RadGraph JSON -> node features -> GCN -> mean pool -> projection.

Node features are the *frozen* phrase encoder's embedding of the entity's words (L2-normalised; computed once
per distinct phrase and kept in an in-memory table, optionally mirrored on disk) plus a learned embedding of
the entity type (ANAT-DP, OBS-DP, OBS-U, OBS-DA, EMPTY). Relations become undirected edges and their types
(modify, located_at, suggestive_of) are dropped: the GCN is not relational; the GCN layers add self loops. A graph with no entity is one placeholder node ``"no entity"`` of type EMPTY.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch_geometric.nn import GCNConv, global_mean_pool

from clinclip.errors import ClinclipError
from clinclip.files import atomic_path, parse_mapping, write_text_atomic
from clinclip.manifest import EMPTY_ENTITY_TYPE, EMPTY_PHRASE


@dataclass(frozen=True)
class ParsedGraph:
    """A graph reduced to what the encoder needs: node phrases, node type names and undirected edges."""

    phrases: tuple[str, ...]
    types: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]  # (i, j) with i < j, node positions


def normalise_phrase(tokens: str) -> str:
    return " ".join(str(tokens).split())


def parse_graph(graph: str | dict[str, Any], allowed_types: Sequence[str], where: str = "graph") -> ParsedGraph:
    """Parse one RadGraph-schema graph (a JSON string or an already decoded dict)."""
    if isinstance(graph, str):
        if not graph.strip():
            raise ClinclipError(f"{where}: empty graph string; expected RadGraph JSON")
        graph = parse_mapping(graph, where, "RadGraph JSON", as_json=True)
    if not isinstance(graph, dict):
        raise ClinclipError(f"{where}: expected a RadGraph JSON object, got {type(graph).__name__}")
    entities = graph.get("entities")
    if entities is None:
        raise ClinclipError(f"{where}: missing 'entities' (RadGraph schema: {{'text': ..., 'entities': {{...}}}})")
    if not isinstance(entities, dict):
        raise ClinclipError(f"{where}: 'entities' must be an object keyed by entity id")
    if not entities:
        return ParsedGraph((EMPTY_PHRASE,), (EMPTY_ENTITY_TYPE,), ())
    position = {str(key): i for i, key in enumerate(entities)}
    phrases, types, edges = [], [], set()
    for key, entity in entities.items():
        if not isinstance(entity, dict):
            raise ClinclipError(f"{where}: entity {key!r} must be an object")
        label = entity.get("label")
        if label not in allowed_types:
            raise ClinclipError(f"{where}: entity {key!r} has label {label!r}; allowed: {', '.join(allowed_types)}")
        phrase = normalise_phrase(entity.get("tokens", ""))
        if not phrase:
            raise ClinclipError(f"{where}: entity {key!r} has no 'tokens' text")
        phrases.append(phrase)
        types.append(label)
        for relation in entity.get("relations", []) or []:
            if not isinstance(relation, (list, tuple)) or len(relation) != 2:
                raise ClinclipError(f"{where}: entity {key!r}: relation {relation!r} must be [type, target_id]")
            target = position.get(str(relation[1]))
            if target is None:
                raise ClinclipError(f"{where}: entity {key!r}: relation {relation[0]!r} points to unknown entity "
                                    f"{relation[1]!r}")
            source = position[str(key)]
            if source != target:
                edges.add((min(source, target), max(source, target)))
    return ParsedGraph(tuple(phrases), tuple(types), tuple(sorted(edges)))


class PhraseEncoder:
    """The frozen text encoder that embeds entity phrases. Deliberately not an ``nn.Module`` attribute of the
    model: it is not trained, not in the model's state dict, not seen by DDP or the optimizer; it follows the
    graph encoder's device lazily."""

    def __init__(self, model, tokenizer, pooling: str = "mean", max_length: int = 32):
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, phrases: list[str], device: torch.device) -> torch.Tensor:
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        tokens = self.tokenizer(phrases, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(device)
        # Autocast off: the cached table is float32 whatever precision the training step runs in.
        with torch.autocast(device_type=device.type, enabled=False):
            hidden = self.model(input_ids=tokens["input_ids"],
                                attention_mask=tokens["attention_mask"]).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


class PhraseEmbeddingCache:
    """Distinct phrase -> row of a growing embedding table (kept on the model's device).

    Rows are assigned in first-seen order and never change, so a graph's node rows can be memoised. With
    ``cache_dir`` the table is also read from / written to ``phrases-<fingerprint>.{json,safetensors}``
    (phrases as JSON, embeddings as safetensors: nothing is unpickled)."""

    def __init__(self, encode: Callable[[list[str], torch.device], torch.Tensor], dim: int,
                 fingerprint: str, cache_dir: str | Path | None = None, batch_size: int = 256):
        self.encode = encode
        self.dim = dim
        self.fingerprint = fingerprint
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.index: dict[str, int] = {}
        self._table = torch.zeros(0, dim)
        self._saved_rows = 0
        if self.cache_dir is not None:
            self._load_disk()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def table(self) -> torch.Tensor:
        return self._table[: len(self.index)]

    def rows(self, phrases: Sequence[str], device: torch.device, progress: bool = False) -> list[int]:
        """Row of each phrase, embedding the ones not seen before (in batches, once each)."""
        missing = list(dict.fromkeys(p for p in phrases if p not in self.index))
        if missing:
            self._add(missing, device, progress)
        return [self.index[p] for p in phrases]

    def device_table(self, device: torch.device) -> torch.Tensor:
        if self._table.device != device:
            self._table = self._table.to(device)
        return self.table

    def _add(self, phrases: list[str], device: torch.device, progress: bool) -> None:
        batches = range(0, len(phrases), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="phrase embeddings", unit="batch")
        chunks = [self.encode(phrases[i:i + self.batch_size], device) for i in batches]
        self._append(phrases, torch.cat(chunks).float())

    def _append(self, phrases: list[str], vectors: torch.Tensor) -> None:
        start, needed = len(self.index), len(self.index) + len(phrases)
        if needed > self._table.shape[0]:
            # Grow by doubling so that adding a few phrases per step stays amortised O(1).
            grown = torch.zeros(max(needed, 2 * self._table.shape[0], 1024), self.dim,
                                device=self._table.device if self._table.numel() else vectors.device)
            grown[:start] = self._table[:start].to(grown.device)
            self._table = grown
        self._table[start:needed] = vectors.to(self._table.device)
        for offset, phrase in enumerate(phrases):
            self.index[phrase] = start + offset

    # ------------------------------------------------------------------ disk mirror
    def _paths(self) -> tuple[Path, Path]:
        assert self.cache_dir is not None
        stem = f"phrases-{self.fingerprint}"
        return self.cache_dir / f"{stem}.json", self.cache_dir / f"{stem}.safetensors"

    def _load_disk(self) -> None:
        names_path, table_path = self._paths()
        if not (names_path.is_file() and table_path.is_file()):
            return
        phrases = json.loads(names_path.read_text(encoding="utf-8"))
        table = load_file(str(table_path))["embeddings"]
        if table.shape != (len(phrases), self.dim):
            raise ClinclipError(f"{table_path}: phrase cache has shape {tuple(table.shape)}, expected "
                                f"({len(phrases)}, {self.dim}); delete the cache files to rebuild them")
        self._append(list(phrases), table)
        self._saved_rows = len(self.index)

    def save(self) -> Path | None:
        """Write the table to ``cache_dir`` (atomically) when it has grown since the last save."""
        if self.cache_dir is None or len(self.index) == self._saved_rows:
            return None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        names_path, table_path = self._paths()
        phrases = sorted(self.index, key=self.index.__getitem__)
        with atomic_path(table_path) as tmp_table:
            save_file({"embeddings": self.table.detach().cpu().contiguous()}, str(tmp_table))
        write_text_atomic(names_path, json.dumps(phrases))
        self._saved_rows = len(self.index)
        return table_path


def phrase_cache_fingerprint(source: str, pooling: str, max_length: int, dim: int) -> str:
    key = json.dumps([source, pooling, max_length, dim])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


class GraphEncoder(nn.Module):
    """Featurises RadGraph JSON itself: ``forward(list of graph JSON strings or dicts) -> [N, embed_dim]``."""

    def __init__(self, phrase_encoder: PhraseEncoder, entity_types: Sequence[str], hidden_dim: int,
                 num_layers: int, embed_dim: int, phrase_cache: PhraseEmbeddingCache, parse_cache_size: int = 200_000):
        super().__init__()

        self.entity_types = tuple(entity_types)
        self.type_index = {name: i for i, name in enumerate(self.entity_types)}
        dim = phrase_encoder.dim
        self.type_embedding = nn.Embedding(len(self.entity_types), dim)
        # Phrase embeddings are unit vectors; give the type vectors a comparable norm (~1) from the start.
        nn.init.normal_(self.type_embedding.weight, std=1.0 / math.sqrt(dim))
        widths = [dim] + [hidden_dim] * num_layers
        self.convs = nn.ModuleList(GCNConv(widths[i], widths[i + 1]) for i in range(num_layers))
        self.projection = nn.Linear(hidden_dim, embed_dim, bias=False)
        self.phrase_encoder = phrase_encoder  # plain object: not a registered submodule (frozen, not saved here)
        self.phrase_cache = phrase_cache
        self._memo: OrderedDict[str, tuple[list[int], list[int], list[tuple[int, int]]]] = OrderedDict()
        self._memo_size = parse_cache_size

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_memo"] = OrderedDict()
        return state

    @property
    def device(self) -> torch.device:
        return self.type_embedding.weight.device

    def _featurise(self, graph: str | dict[str, Any], where: str) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        key = graph if isinstance(graph, str) else None
        if key is not None and key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        parsed = parse_graph(graph, self.entity_types, where)
        rows = self.phrase_cache.rows(parsed.phrases, self.device)
        item = (rows, [self.type_index[t] for t in parsed.types], list(parsed.edges))
        if key is not None:
            self._memo[key] = item
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return item

    def warm_up(self, graphs: Sequence[str | dict[str, Any]], progress: bool = True) -> int:
        """Embed every distinct phrase of ``graphs`` up front (one pass, batched, with a progress bar) and
        write the disk cache when one is configured. Returns the number of distinct phrases known."""
        phrases: dict[str, None] = {}
        for i, graph in enumerate(graphs):
            if graph is None:
                continue
            phrases.update(dict.fromkeys(parse_graph(graph, self.entity_types, f"graph {i}").phrases))
        self.phrase_cache.rows(list(phrases), self.device, progress=progress)
        self.phrase_cache.save()
        return len(self.phrase_cache)

    def forward(self, graphs: Sequence[str | dict[str, Any]]) -> torch.Tensor:
        device = self.device
        rows: list[int] = []
        types: list[int] = []
        batch: list[int] = []
        sources: list[int] = []
        targets: list[int] = []
        for g, graph in enumerate(graphs):
            node_rows, node_types, edges = self._featurise(graph, f"graph {g} of the batch")
            offset = len(rows)
            rows.extend(node_rows)
            types.extend(node_types)
            batch.extend([g] * len(node_rows))
            for i, j in edges:  # undirected: both directions
                sources += [offset + i, offset + j]
                targets += [offset + j, offset + i]
        table = self.phrase_cache.device_table(device)
        x = table[torch.tensor(rows, device=device)] + self.type_embedding(torch.tensor(types, device=device))
        edge_index = torch.tensor([sources, targets], dtype=torch.long, device=device).reshape(2, -1)
        for k, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if k < len(self.convs) - 1:
                x = torch.relu(x)
        pooled = global_mean_pool(x, torch.tensor(batch, device=device), size=len(graphs))
        return self.projection(pooled)
