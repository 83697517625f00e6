"""Text-encoder analyses of negation (the second source document):

- Integrated Gradients (captum, optional dependency) over the token embeddings of negated sentences
  ("No pleural effusion."): the attributed quantity is the cosine similarity of the negated sentence's
  embedding to its affirmed counterpart's ("Pleural effusion."). Reported: per-token attributions and
  the share of the attribution mass (absolute values) carried by negation cues ("no", "not", ...) -- a
  model that reads the negation puts weight on the cue.
- t-SNE (scikit-learn) of affirmed vs negated sentence embeddings, with a plot; the silhouette score of
  the two groups (cosine) and the mean cosine similarity of each affirmed/negated pair.
- Attention-head ablation: each head of each text-encoder layer is zeroed in turn (a forward hook on
  the self-attention module sets that head's slice of the context output to zero, which works with
  transformers 5.x BERT whose attention no longer takes ``head_mask``) and CXR-Align task A is
  re-measured; a heat map of the accuracy change per (layer, head).

The encoder must expose ``text_model`` (the transformers module) and ``tokenizer``; its
``encode_texts`` must be differentiable for Integrated Gradients.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.observations import FINDINGS

SENTENCE_TEMPLATES = (  # (affirmed, negated)
    ("{X}.", "No {x}."),
    ("There is {x}.", "There is no {x}."),
    ("{X} is present.", "{X} is not present."),
    ("Findings consistent with {x}.", "No evidence of {x}."),
)
NEGATION_CUES = {"no", "not", "without", "absent", "negative", "free", "none", "neither", "nor"}


def sentence_pairs(findings=FINDINGS, templates=SENTENCE_TEMPLATES) -> list[tuple[str, str, str]]:
    """(finding, affirmed, negated) sentences for every finding and template."""
    out = []
    for f in findings:
        x = f.lower()
        for aff, neg in templates:
            out.append((f, aff.format(x=x, X=x.capitalize()), neg.format(x=x, X=x.capitalize())))
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _text_model(encoder):
    model = getattr(encoder, "text_model", None)
    if model is None:
        raise ClinclipError("this encoder exposes no text_model; the text analyses need it")
    return model


def _text_embeddings_with_grad(encoder, texts):
    """Text embeddings with autograd (``encode_texts`` of the evaluation interface runs without it): the
    interface's ``tokenize`` + ``embed_tokens`` when present, else ``encode_texts``."""
    import torch

    if hasattr(encoder, "embed_tokens") and hasattr(encoder, "tokenize"):
        tokens = encoder.tokenize(list(texts))
        device = getattr(encoder, "device", "cpu")
        mask = tokens.get("attention_mask")
        out = encoder.embed_tokens(tokens["input_ids"].to(device), None if mask is None else mask.to(device))
        return torch.nn.functional.normalize(out.float(), dim=-1)
    return encoder.encode_texts(list(texts)).float()


def _token_strings(encoder, sentence: str) -> list[str]:
    tokenizer = getattr(encoder, "tokenizer", None)
    if hasattr(encoder, "tokenize"):
        tokens = encoder.tokenize([sentence])
        ids = tokens["input_ids"][0]
        mask = tokens.get("attention_mask")
        n = int(mask[0].sum()) if mask is not None else len(ids)
        ids = [int(i) for i in ids[:n]]
    elif tokenizer is not None:
        ids = tokenizer(sentence)["input_ids"]
    else:
        return []
    if tokenizer is not None and hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer.convert_ids_to_tokens(ids))
    return [str(i) for i in ids]


def _embedding_layer(text_model):
    getter = getattr(text_model, "get_input_embeddings", None)
    embeddings = getattr(text_model, "embeddings", None)
    if embeddings is not None:
        return embeddings  # word + position (+ type) embeddings: attribute over what the layers see
    if getter is not None:
        return getter()
    raise ClinclipError("cannot find the text model's embedding layer")


# -- Integrated Gradients ----------------------------------------------------------------------------
def integrated_gradients(encoder, pairs: list[tuple[str, str, str]], steps: int = 32) -> dict:
    try:
        from captum.attr import IntegratedGradients
    except ImportError as err:
        raise ClinclipError("Integrated Gradients needs captum: pip install 'clinclip[analysis]' "
                            "(or pip install captum)") from err
    import torch

    text_model = _text_model(encoder)
    layer = _embedding_layer(text_model)
    results = []
    for finding, affirmed, negated in pairs:
        with torch.no_grad():
            reference = encoder.encode_texts([affirmed]).float()
        captured = {}

        def capture(_m, _i, out):
            captured["emb"] = out.detach()

        handle = layer.register_forward_hook(capture)
        try:
            with torch.no_grad():
                encoder.encode_texts([negated])
        finally:
            handle.remove()
        emb = captured["emb"]  # 1 x T x H

        def forward(emb_batch):
            def replace(_m, _i, _out):
                return emb_batch

            h = layer.register_forward_hook(replace)
            try:
                with torch.enable_grad():
                    out = _text_embeddings_with_grad(encoder, [negated] * emb_batch.shape[0])
            finally:
                h.remove()
            if not out.requires_grad:
                raise ClinclipError("the encoder's text path is not differentiable (no embed_tokens, and "
                                    "encode_texts runs under no_grad); Integrated Gradients cannot be computed")
            return torch.nn.functional.cosine_similarity(out, reference.expand_as(out), dim=1)

        ig = IntegratedGradients(forward)
        attr = ig.attribute(emb, baselines=torch.zeros_like(emb), n_steps=steps, internal_batch_size=steps)
        per_token = attr.sum(dim=-1)[0].detach().cpu().numpy()
        tokens = _token_strings(encoder, negated) or [f"t{i}" for i in range(len(per_token))]
        n = min(len(tokens), len(per_token))
        tokens, per_token = tokens[:n], per_token[:n]
        mass = np.abs(per_token)
        words = [t.lstrip("#").lstrip("Ġ▁").lower() for t in tokens]
        cue = np.array([w in NEGATION_CUES for w in words])
        share = float(mass[cue].sum() / mass.sum()) if mass.sum() > 0 else float("nan")
        results.append({"finding": finding, "sentence": negated, "tokens": tokens,
                        "attributions": per_token.tolist(), "negation_cue_share": share})
    shares = [r["negation_cue_share"] for r in results]
    return {"sentences": results, "mean_negation_cue_share": float(np.nanmean(shares)) if results else None}


def _ig_plot(ig: dict, max_sentences: int = 4) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = ig["sentences"][:max_sentences]
    fig, axes = plt.subplots(len(items), 1, figsize=(7, 1.6 * len(items)), squeeze=False)
    for ax, item in zip(axes[:, 0], items):
        values = np.array(item["attributions"])
        ax.bar(range(len(values)), values, color=["#c0392b" if v < 0 else "#2e6fb0" for v in values])
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(item["tokens"], rotation=45, ha="right", fontsize=7)
        ax.set_title(item["sentence"], fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Integrated Gradients: token attribution to sim(negated, affirmed)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


# -- t-SNE ---------------------------------------------------------------------------------------------
def tsne_analysis(store, pairs: list[tuple[str, str, str]], seed: int = 0) -> tuple[dict, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    affirmed = store.text_embeddings([p[1] for p in pairs])
    negated = store.text_embeddings([p[2] for p in pairs])
    x = np.concatenate([affirmed, negated])
    group = np.array([0] * len(pairs) + [1] * len(pairs))
    perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
    # exact t-SNE for a few hundred points: Barnes-Hut is slower there and stalls on busy CPUs
    method = "exact" if len(x) <= 1000 else "barnes_hut"
    xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca",
              method=method).fit_transform(x)
    silhouette = float(silhouette_score(x, group, metric="cosine")) if len(set(group)) > 1 else float("nan")
    pair_cos = float((affirmed * negated).sum(axis=1).mean())
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for g, (label, color) in enumerate((("affirmed", "#2e6fb0"), ("negated", "#c0392b"))):
        ax.scatter(xy[group == g, 0], xy[group == g, 1], s=14, c=color, label=label, alpha=0.8)
    ax.legend(fontsize=8)
    ax.set_title(f"t-SNE of sentence embeddings (silhouette {silhouette:.2f})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return {"silhouette_affirmed_vs_negated": silhouette, "mean_pair_cosine": pair_cos,
            "n_pairs": len(pairs)}, _png(fig)


# -- attention-head ablation ----------------------------------------------------------------------------
def attention_modules(text_model) -> list:
    """The attention modules (one per layer) whose context output is split into heads: BERT-like
    ``*SelfAttention`` (heads concatenated in the module's output) and CLIP-like modules with an
    ``out_proj`` (heads concatenated in out_proj's input). Innermost matches only."""
    found = []
    for module in text_model.modules():
        name = type(module).__name__
        heads = getattr(module, "num_attention_heads", None) or getattr(module, "num_heads", None)
        size = getattr(module, "attention_head_size", None) or getattr(module, "head_dim", None)
        if "Attention" in name and heads and size and (name.endswith("SelfAttention") or
                                                      hasattr(module, "out_proj")):
            found.append(module)
    if not found:
        raise ClinclipError("no attention module with a head count and head size found in the text model; "
                            "head ablation supports BERT-like and CLIP-like encoders")
    return found


def _head_geometry(module) -> tuple[int, int]:
    heads = getattr(module, "num_attention_heads", None) or getattr(module, "num_heads")
    size = getattr(module, "attention_head_size", None) or getattr(module, "head_dim")
    return int(heads), int(size)


def _zero_slice(tensor, head: int, size: int):
    tensor = tensor.clone()
    tensor[..., head * size:(head + 1) * size] = 0
    return tensor


def zero_head(module, head: int):
    """Zero one head's context vector in ``module`` (until the returned handle is removed). BERT's
    self-attention returns the concatenated heads, so its output slice is zeroed; a CLIP-like module
    projects them with ``out_proj``, so out_proj's input slice is zeroed. transformers 5.x BERT has no
    ``head_mask`` any more, so this hook is the way to ablate a head."""
    _, size = _head_geometry(module)
    if hasattr(module, "out_proj"):
        return module.out_proj.register_forward_pre_hook(
            lambda _m, args: (_zero_slice(args[0], head, size), *args[1:]))

    def hook(_module, _inputs, output):
        if isinstance(output, tuple):
            return (_zero_slice(output[0], head, size), *output[1:])
        return _zero_slice(output, head, size)

    return module.register_forward_hook(hook)


def head_ablation(store, benchmark: dict, frame, manifest, max_triplets: int = 200, seed: int = 0
                  ) -> tuple[dict, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    encoder = store.encoder
    modules = attention_modules(_text_model(encoder))
    paths = dict(zip(frame["image_id"].astype(str), frame["image_path"]))
    triplets = [(paths[i], e["report"], e["negation"]) for entries in benchmark.values()
                for i, e in entries.items() if i in paths]
    if not triplets:
        raise ClinclipError(f"head ablation: no CXR-Align image id found in {manifest}")
    rng = np.random.default_rng(seed)
    if len(triplets) > max_triplets:
        triplets = [triplets[i] for i in np.sort(rng.choice(len(triplets), max_triplets, replace=False))]
    img, ok, _ = store.image_embeddings([t[0] for t in triplets], manifest)
    triplets = [t for t, good in zip(triplets, ok) if good]
    img = img[ok]
    texts = [t[1] for t in triplets] + [t[2] for t in triplets]

    def accuracy_a() -> float:
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), store.batch_size):
                parts.append(encoder.encode_texts(texts[start:start + store.batch_size]).float().cpu().numpy())
        emb = np.concatenate(parts)
        return float(metrics.pairwise_preference(img, emb[:len(triplets)], emb[len(triplets):]).mean())

    base = accuracy_a()
    n_heads = _head_geometry(modules[0])[0]
    delta = np.zeros((len(modules), n_heads))
    from tqdm.auto import tqdm

    with tqdm(total=len(modules) * n_heads, desc="ablating heads", disable=not store.progress) as bar:
        for layer, module in enumerate(modules):
            for head in range(_head_geometry(module)[0]):
                handle = zero_head(module, head)
                try:
                    delta[layer, head] = accuracy_a() - base
                finally:
                    handle.remove()
                bar.update(1)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * n_heads + 2), max(3, 0.4 * len(modules) + 1.5)))
    bound = max(1.0, float(np.abs(100 * delta).max()))  # at least +-1 percentage point on the scale
    im = ax.imshow(100 * delta, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(len(modules)))
    if delta.size <= 64:  # small grids: print the change in each cell
        for (layer, head), value in np.ndenumerate(100 * delta):
            ax.text(head, layer, f"{value:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"CXR-Align A change when a head is zeroed (base {100 * base:.1f}%)", fontsize=9)
    fig.colorbar(im, ax=ax, label="percentage points")
    worst = np.unravel_index(np.argmin(delta), delta.shape)
    return {"base_accuracy_a": base, "delta": delta.tolist(), "n_triplets": len(triplets),
            "most_harmful_head": {"layer": int(worst[0]), "head": int(worst[1]),
                                  "delta": float(delta[worst])}}, _png(fig)


def run_analyses(store, which=("ig", "tsne", "heads"), benchmark: dict | None = None, frame=None,
                 manifest="manifest", max_triplets: int = 200, ig_steps: int = 32, seed: int = 0) -> dict:
    unknown = set(which) - {"ig", "tsne", "heads"}
    if unknown:
        raise ClinclipError(f"unknown analyses {sorted(unknown)}; choose from ig, tsne, heads")
    pairs = sentence_pairs()
    result = {"task": "analyses", "dataset": "sentences" if benchmark is None else "+".join(benchmark),
              "metrics": {}, "plots": {}, "skipped": {}, "notes": []}
    rows = []
    if "ig" in which:
        # one sentence per finding, the plainest template: "No pleural effusion." vs "Pleural effusion."
        ig = integrated_gradients(store.encoder, sentence_pairs(templates=SENTENCE_TEMPLATES[:1]),
                                  steps=ig_steps)
        result["integrated_gradients"] = ig
        result["metrics"]["negation_cue_share"] = ig["mean_negation_cue_share"]
        result["plots"]["Integrated Gradients (negated sentences)"] = _ig_plot(ig)
        rows.append(["IG: attribution share of negation cues", ig["mean_negation_cue_share"]])
    if "tsne" in which:
        tsne, png = tsne_analysis(store, pairs, seed=seed)
        result["tsne"] = tsne
        result["metrics"]["silhouette"] = tsne["silhouette_affirmed_vs_negated"]
        result["metrics"]["mean_pair_cosine"] = tsne["mean_pair_cosine"]
        result["plots"]["t-SNE affirmed vs negated"] = png
        rows += [["t-SNE: silhouette affirmed vs negated (count scale -1..1)",
                  f"{tsne['silhouette_affirmed_vs_negated']:.3f}"],
                 ["mean cosine(affirmed, negated) (count scale)", f"{tsne['mean_pair_cosine']:.3f}"]]
    if "heads" in which:
        if benchmark is None or frame is None:
            result["notes"].append("head ablation skipped: no --benchmark (CXR-Align JSON) given")
        else:
            heads, png = head_ablation(store, benchmark, frame, manifest, max_triplets=max_triplets, seed=seed)
            result["head_ablation"] = heads
            result["metrics"]["base_accuracy_a"] = heads["base_accuracy_a"]
            result["plots"]["Attention-head ablation (CXR-Align A)"] = png
            worst = heads["most_harmful_head"]
            rows += [["CXR-Align A, no ablation", heads["base_accuracy_a"]],
                     [f"largest drop: layer {worst['layer']} head {worst['head']}", worst["delta"]]]
    result["table"] = {"columns": ["analysis", "value"], "rows": rows}
    return result
