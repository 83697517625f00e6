"""`ClinClipLoss`: the loss as an nn.Module in open_clip's style. It owns the cross-rank gathering, so
soft labels and losses are those of the global batch.

DDP convention (the one open_clip uses with ``gather_with_grad=True, local_loss=False``): every rank
gathers all embeddings *with gradient* and computes the same global loss L. The backward of the
functional collective's all-gather (``torch.distributed._functional_collectives``, a reduce-scatter)
sums the gradients that all ranks send to a shard, so
rank r's local embeddings receive ``world_size * dL/dx_r``; DDP then averages parameter gradients over
the ranks, which gives exactly dL/dθ of one process on the concatenated batch. Do not divide the loss
by the world size.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.distributed as dist
from torch import nn

from clinclip.losses.config import LossConfig, load_variant
from clinclip.losses.functional import loss_terms
from clinclip.losses.soft_labels import clinical_vectors

_EMBEDDING_KEYS = ("image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds")


def gather_rows(tensors: list[torch.Tensor], world_size: int, group=None, with_grad: bool = True) -> list[torch.Tensor]:
    """All-gather each (rows x ...) tensor across ranks and concatenate in rank order. Ranks may hold
    different numbers of rows (a last, smaller batch): rows are padded to the largest count for the
    collective and the padding is cut off again. With ``with_grad`` the gather is differentiable
    (gradients flow back to every rank's shard, summed)."""
    if world_size == 1:
        return list(tensors)

    local = torch.tensor([tensors[0].shape[0]], device=tensors[0].device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(world_size)]
    dist.all_gather(sizes, local, group=group)
    sizes = [int(s.item()) for s in sizes]
    largest = max(sizes)
    gathered = []
    for x in tensors:
        if x.shape[0] != local.item():
            raise ValueError("all tensors gathered together must have the same number of rows")
        padded = x
        if x.shape[0] < largest:
            pad = x.new_zeros((largest - x.shape[0], *x.shape[1:]))
            padded = torch.cat([x, pad])
        if with_grad:
            parts = _all_gather_with_grad(padded.contiguous(), group).split(largest)
        else:
            parts = [torch.empty_like(padded) for _ in range(world_size)]
            dist.all_gather(parts, padded.contiguous(), group=group)
        gathered.append(torch.cat([p[:n] for p, n in zip(parts, sizes)]))
    return gathered


def _all_gather_with_grad(x: torch.Tensor, group) -> torch.Tensor:
    """Rows of every rank concatenated, differentiable: the functional collective (its backward is a
    reduce-scatter, i.e. each shard gets the sum of the gradients all ranks send it). Replaces the
    deprecated ``torch.distributed.nn.functional.all_gather``."""
    import torch.distributed._functional_collectives as fc

    gather = getattr(fc, "all_gather_single_autograd", None) or fc.all_gather_tensor_autograd
    out = gather(x, 0, group if group is not None else dist.group.WORLD)
    return fc.wait_tensor(out) if isinstance(out, fc.AsyncCollectiveTensor) else out


class ClinClipLoss(nn.Module):
    """``ClinClipLoss(cfg, rank=0, world_size=1)``; ``cfg`` is a LossConfig or a variant name/path.

    ``forward(outputs, labels, neg_labels=None)``: ``outputs`` is the model's dict (``image_embeds``,
    ``text_embeds``, ``neg_text_embeds``, ``graph_embeds``, ``neg_graph_embeds`` raw projections,
    ``logit_scale`` already exponentiated); ``labels``/``neg_labels`` are B x 14 CheXpert values
    (1/0/-1/NaN) of the report and of its hard negative. Returns ``{"loss", "logit_scale",
    "global_batch"}`` plus, unless ``components=False``, ``"P"`` (weighted loss of pair P) and
    ``"P/k"`` (unweighted L_k(P)) for logging; only "loss" has gradient. The loss runs in float32 with
    autocast off, whatever the encoders ran in.
    """

    def __init__(self, cfg: LossConfig | str, rank: int = 0, world_size: int = 1, group=None,
                 components: bool = True):
        super().__init__()
        # components=False skips the per-pair/stream values (one extra pass per stream and pair).
        self.components = components
        self.cfg = load_variant(cfg) if isinstance(cfg, str) else cfg.validate()
        self.rank = rank
        self.world_size = world_size
        self.group = group
        if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"world_size={world_size} but torch.distributed is not initialised")

    def extra_repr(self) -> str:
        return f"variant={self.cfg.name!r}, rank={self.rank}, world_size={self.world_size}"

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor | None = None,
        neg_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        needs = set(cfg.needed_inputs())
        wanted = ["image_embeds", "text_embeds"]
        if cfg.hard_negatives:
            wanted.append("neg_text_embeds")
        if cfg.graph:
            wanted.append("graph_embeds")
            if cfg.hard_negatives:
                wanted.append("neg_graph_embeds")
        missing = [k for k in wanted + ["logit_scale"] if outputs.get(k) is None]
        if missing:
            raise ValueError(
                f"loss variant {cfg.name!r} needs model outputs {missing}; the model returned "
                f"{sorted(k for k, x in outputs.items() if x is not None)}"
            )
        if "labels" in needs and labels is None:
            raise ValueError(f"loss variant {cfg.name!r} uses the clinical stream and needs the 14 labels")
        if "neg_labels" in needs and neg_labels is None:
            raise ValueError(f"loss variant {cfg.name!r} needs the labels of the hard negatives (neg_labels)")

        embeds = gather_rows([outputs[k] for k in wanted], self.world_size, self.group, with_grad=True)
        found = dict(zip(wanted, embeds))
        c1 = c2 = None
        if "labels" in needs:
            label_rows = [clinical_vectors(labels, cfg.uncertain_as)]
            if "neg_labels" in needs:
                label_rows.append(clinical_vectors(neg_labels, cfg.uncertain_as))
            label_rows = [x.to(device=embeds[0].device) for x in label_rows]
            gathered = gather_rows(label_rows, self.world_size, self.group, with_grad=False)
            c1 = gathered[0]
            c2 = gathered[1] if len(gathered) > 1 else None

        out = loss_terms(
            found["image_embeds"],
            found["text_embeds"],
            found.get("neg_text_embeds"),
            found.get("graph_embeds"),
            found.get("neg_graph_embeds"),
            c1,
            c2,
            outputs["logit_scale"],
            cfg.weights,
            cfg.taus,
            pairs=cfg.pairs,
            pair_stream_weights=cfg.pair_stream_weights,
            softclip_negatives_only=cfg.softclip.negatives_only,
            softclip_scale=cfg.softclip.scale,
            components=self.components,
            exact_kl=cfg.exact_kl,
        )
        scale = outputs["logit_scale"]
        out["logit_scale"] = scale.detach() if torch.is_tensor(scale) else torch.tensor(float(scale))
        out["global_batch"] = torch.tensor(found["image_embeds"].shape[0])
        return out
