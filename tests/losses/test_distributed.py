"""2-process gloo run of ClinClipLoss (real torch.distributed, real DDP) against one process on the
concatenated batch.

Convention tested (see clinclip/losses/module.py): every rank computes the global loss; the gathered
embeddings' backward sums over ranks, so a rank's local embedding gradient is world_size x the
single-process gradient of its rows, and after DDP's averaging the parameter gradients equal the
single-process ones exactly. Ranks hold different batch sizes (3 and 2) to exercise the padding."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from clinclip.losses import ClinClipLoss, load_variant

SHARDS = [slice(0, 3), slice(3, 5)]
D_IN, D = 7, 6
KEYS = ("image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds")


def _global_data():
    g = torch.Generator().manual_seed(123)
    feats = {k: torch.randn(5, D_IN, generator=g, dtype=torch.float64) for k in KEYS}
    labels = torch.randint(-1, 2, (5, 14), generator=g).to(torch.float64)
    labels[labels == 0] = float("nan")  # blanks
    labels[1] = float("nan")  # an empty label row
    neg_labels = torch.randint(-1, 2, (5, 14), generator=g).to(torch.float64)
    feats[KEYS[1]][4] = feats[KEYS[1]][0]  # a duplicate report across ranks
    return feats, labels, neg_labels


class _Encoders(nn.Module):
    """One linear projection per modality and a learnable logit scale, like the real model's heads."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.ModuleDict({k: nn.Linear(D_IN, D).double() for k in KEYS})
        self.log_scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def forward(self, feats):
        out = {k: self.proj[k](feats[k]) for k in KEYS}
        out["logit_scale"] = self.log_scale.exp()
        return out


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        feats, labels, neg_labels = _global_data()
        shard = SHARDS[rank]
        cfg = load_variant("clip-ng-dtcg")
        loss_fn = ClinClipLoss(cfg, rank=rank, world_size=world_size)

        # (a) raw embeddings as leaves: per-rank loss and embedding gradients
        leaves = {k: feats[k][shard].clone().requires_grad_(True) for k in KEYS}
        scale = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
        out = loss_fn({**leaves, "logit_scale": scale}, labels[shard], neg_labels[shard])
        out["loss"].backward()
        result = {
            "loss": out["loss"].detach(),
            "components": {k: v for k, v in out.items() if k != "loss"},
            "grads": {k: leaves[k].grad for k in KEYS},
            "scale_grad": scale.grad,
        }

        # (b) a real DDP model: parameter gradients after DDP's averaging
        model = nn.parallel.DistributedDataParallel(_Encoders())
        out = loss_fn(model({k: feats[k][shard] for k in KEYS}), labels[shard], neg_labels[shard])
        out["loss"].backward()
        result["ddp_loss"] = out["loss"].detach()
        result["ddp_grads"] = {n: p.grad.clone() for n, p in model.module.named_parameters()}
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_equals_one_process(tmp_path):
    world_size = 2
    mp.spawn(_worker, args=(world_size, str(tmp_path / "init"), str(tmp_path)), nprocs=world_size, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]

    feats, labels, neg_labels = _global_data()
    loss_fn = ClinClipLoss("clip-ng-dtcg")
    leaves = {k: feats[k].clone().requires_grad_(True) for k in KEYS}
    scale = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    single = loss_fn({**leaves, "logit_scale": scale}, labels, neg_labels)
    single["loss"].backward()

    for r, res in enumerate(ranks):
        torch.testing.assert_close(res["loss"], single["loss"].detach(), rtol=1e-12, atol=1e-12)
        for k, v in single.items():
            if k != "loss":
                torch.testing.assert_close(res["components"][k], v.detach(), rtol=1e-12, atol=1e-12)
        for k in KEYS:  # local shard gradient = world_size x single-process gradient of those rows
            torch.testing.assert_close(res["grads"][k], world_size * leaves[k].grad[SHARDS[r]], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(res["scale_grad"], scale.grad, rtol=1e-10, atol=1e-12)

    model = _Encoders()
    out = loss_fn(model(feats), labels, neg_labels)
    out["loss"].backward()
    for res in ranks:
        torch.testing.assert_close(res["ddp_loss"], out["loss"].detach(), rtol=1e-12, atol=1e-12)
        for name, p in model.named_parameters():
            torch.testing.assert_close(res["ddp_grads"][name], p.grad, rtol=1e-10, atol=1e-12)
    assert int(ranks[0]["components"]["global_batch"]) == 5
