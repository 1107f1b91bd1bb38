"""RoI pooling and the Fast R-CNN head: fc6/fc7 with dropout, classifier, per-class regressor."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.ops import roi_align, roi_pool

from ohem_tune.modeling.roi_align_grad import roi_align_separable


class RoIPooler(nn.Module):
    """Pools (R, 5) [batch_idx, x1, y1, x2, y2] inclusive-pixel RoIs to (R, C, P, P).

    roi_pool follows Caffe's RoIPooling (rounded corners, inclusive end), so inclusive
    coordinates go in unchanged. roi_align (aligned=True) samples continuous coordinates
    in which pixel i covers [i, i + 1), so the far corner is passed as x2 + 1. On CPU, a
    roi_align whose features need a gradient uses the separable backward (roi_align_grad.py):
    same forward, a backward ~10x cheaper than torchvision's CPU kernel at the local sizes.
    """

    def __init__(self, op: str, output_size: int, spatial_scale: float, sampling_ratio: int = 2):
        super().__init__()
        self.op = op
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if features.dtype in (torch.float16, torch.bfloat16):
            features = features.float()  # as torchvision's autocast wrappers do: fp32 RoI ops
        rois = rois.to(features.dtype)  # fp16/bf16 coordinates would lose sub-pixel precision
        if self.op == "roi_pool":
            return roi_pool(features, rois, self.output_size, self.spatial_scale)
        boxes = rois.clone()
        boxes[:, 3:5] += 1.0
        if features.device.type == "cpu" and features.requires_grad and self.sampling_ratio > 0:
            return roi_align_separable(
                features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio
            )
        return roi_align(
            features,
            boxes,
            self.output_size,
            self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )


class FastRCNNHead(nn.Module):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> (cls_score, bbox_pred)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        fc6_dim: int,
        fc7_dim: int,
        dropout: float,
    ):
        super().__init__()
        self.fc6 = nn.Linear(in_features, fc6_dim)
        self.fc7 = nn.Linear(fc6_dim, fc7_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.cls_score = nn.Linear(fc7_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc7_dim, 4 * (num_classes + 1))
        # Fast R-CNN's initialisation of the two new layers.
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(
        self, pooled: torch.Tensor, readonly: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`readonly`: a no-grad pass (OHEM's ranking), dropout drawn by `readonly_dropout`."""
        x = pooled.flatten(1)
        x = self.drop(torch.relu(self.fc6(x)), readonly)
        x = self.drop(torch.relu(self.fc7(x)), readonly)
        return self.cls_score(x), self.bbox_pred(x)

    def drop(self, x: torch.Tensor, readonly: bool = False) -> torch.Tensor:
        """The head's dropout on `x`: nn.Dropout, or `readonly_dropout` (in place, no graph)."""
        return readonly_dropout(x, self.dropout) if readonly else self.dropout(x)


def readonly_dropout(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """`module`'s dropout applied to `x` in place, for passes that record no graph.

    The same Bernoulli(1 - p) keep mask and 1 / (1 - p) scale as nn.Dropout, drawn as float32
    uniforms (u >= p) whatever x's dtype, so a pass under fp16/bf16 autocast draws the same mask
    as an fp32 pass from the same RNG state; ~3x cheaper than nn.Dropout's bernoulli_ on an
    Intel CPU (measured), which matters for OHEM's read-only pass over every RoI. The identity
    in eval mode or without dropout.
    """
    if not isinstance(module, nn.Dropout) or not module.training or module.p == 0:
        return x
    if x.requires_grad:
        raise RuntimeError("readonly_dropout works in place: call it under torch.no_grad()")
    if module.p >= 1:
        return x.zero_()
    uniform = torch.rand(x.shape, dtype=torch.float32, device=x.device)
    keep = uniform.ge_(module.p)  # 1.0 where kept, with probability 1 - p
    return x.mul_(keep).mul_(1.0 / (1.0 - module.p))
