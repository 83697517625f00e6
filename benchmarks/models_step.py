"""Training-step cost of the model part: the tiny preset, batch 64, forward + backward + AdamW step.

Compares what each variant family asks of the model: image+text (clip), + hard-negative texts (clip-n),
+ report graphs of both (clip-ng-*). The loss here is a plain symmetric InfoNCE over whatever embeddings exist
(the model's cost, not the loss part's); graphs are synthetic RadGraph JSON (8 entities from a bank of 300
phrases), phrase embeddings warmed up once as training does.

    python benchmarks/models_step.py [--batch 64] [--steps 6] [--threads 2] [--preset tiny]

On a shared machine wall time is meaningless and multi-threaded CPU time is inflated by OpenMP spin-waits;
``--threads 1`` and the CPU-seconds column give a load-independent comparison (ideal 2-thread wall time is
about half of it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import torch

from clinclip.models import ClinClipModel

ANATOMY = ["left lung", "right lung", "pleural", "heart", "mediastinum", "lower lobe", "upper lobe", "hilar",
           "costophrenic angle", "apex"]
FINDINGS = ["effusion", "pneumothorax", "opacity", "consolidation", "edema", "atelectasis", "nodule", "mass",
            "cardiomegaly", "fracture", "catheter", "tube", "thickening", "enlarged", "small", "large", "mild",
            "moderate", "severe", "patchy", "focal", "streaky", "bibasilar", "increased", "low"]
TYPES = ["ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA"]


def synthetic_graphs(n: int, rng: random.Random) -> list[str]:
    bank = [f"{a} {f}" for a in ANATOMY for f in FINDINGS[:15]] + FINDINGS + ANATOMY
    graphs = []
    for _ in range(n):
        entities = {}
        for k in range(1, 9):
            relations = [["located_at", str(rng.randint(1, 8))]] if rng.random() < 0.6 else []
            entities[str(k)] = {"tokens": rng.choice(bank), "label": rng.choice(TYPES), "start_ix": k, "end_ix": k,
                                "relations": [r for r in relations if r[1] != str(k)]}
        graphs.append(json.dumps({"text": "synthetic", "entities": entities}))
    return graphs


def info_nce(out: dict[str, torch.Tensor]) -> torch.Tensor:
    v = torch.nn.functional.normalize(out["image_embeds"], dim=-1)
    texts = [out["text_embeds"]] + ([out["neg_text_embeds"]] if "neg_text_embeds" in out else [])
    t = torch.nn.functional.normalize(torch.cat(texts), dim=-1)
    target = torch.arange(len(v))
    loss = torch.nn.functional.cross_entropy(out["logit_scale"] * v @ t.T, target)
    if "graph_embeds" in out:
        g = torch.nn.functional.normalize(torch.cat([out["graph_embeds"], out["neg_graph_embeds"]]), dim=-1)
        loss = loss + torch.nn.functional.cross_entropy(out["logit_scale"] * v @ g.T, target)
        loss = loss + torch.nn.functional.cross_entropy(out["logit_scale"] * t @ g.T, torch.arange(len(t)))
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = ClinClipModel.from_preset(args.preset)
    size, b = model.config.image.image_size, args.batch
    reports = [" ".join(rng.choice(FINDINGS + ANATOMY) for _ in range(40)) + "." for _ in range(b)]
    negs = [" ".join(rng.choice(FINDINGS + ANATOMY) for _ in range(40)) + "." for _ in range(b)]
    tokens, neg_tokens = model.tokenize(reports), model.tokenize(negs)
    graphs, neg_graphs = synthetic_graphs(b, rng), synthetic_graphs(b, rng)
    started = time.perf_counter()
    model.graph_encoder.warm_up(graphs + neg_graphs, progress=False)
    warm_up_s = time.perf_counter() - started
    base = {"pixel_values": torch.randn(b, 3, size, size), **tokens}
    variants = {
        "clip (image + text)": base,
        "clip-n (+ negated texts)": {**base, "neg_input_ids": neg_tokens["input_ids"],
                                     "neg_attention_mask": neg_tokens["attention_mask"]},
        "clip-ng (+ negated texts + graphs)": {**base, "neg_input_ids": neg_tokens["input_ids"],
                                               "neg_attention_mask": neg_tokens["attention_mask"],
                                               "graphs": graphs, "neg_graphs": neg_graphs},
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    results, cpu = {}, {}
    for name, batch in variants.items():
        times, cpu_times = [], []
        for step in range(args.steps + 1):  # the first step warms allocators up and is not counted
            started, cpu_started = time.perf_counter(), time.process_time()
            loss = info_nce(model(batch))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step:
                times.append(time.perf_counter() - started)
                cpu_times.append(time.process_time() - cpu_started)
        results[name] = statistics.median(times)
        cpu[name] = statistics.median(cpu_times)
    base_time = results["clip (image + text)"]
    print(f"preset {args.preset}, batch {b}, {args.threads} threads, text length {tokens['input_ids'].shape[1]}, "
          f"phrase warm-up {warm_up_s:.2f} s for {len(model.graph_encoder.phrase_cache)} phrases")
    # CPU seconds (all threads) are less distorted than wall time when other processes share the cores.
    base_cpu = cpu["clip (image + text)"]
    print(f"| {'variant':36} | wall s/step | × clip | CPU s/step | × clip |")
    print(f"|{'-' * 38}|{'-' * 13}|{'-' * 8}|{'-' * 12}|{'-' * 8}|")
    for name, seconds in results.items():
        print(f"| {name:36} | {seconds:11.3f} | {seconds / base_time:6.2f} | {cpu[name]:10.3f} | "
              f"{cpu[name] / base_cpu:6.2f} |")
    print(f"(median of {args.steps} steps after one warm-up step; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
