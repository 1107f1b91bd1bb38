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

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = pooled.flatten(1)
        x = self.dropout(torch.relu(self.fc6(x)))
        x = self.dropout(torch.relu(self.fc7(x)))
        return self.cls_score(x), self.bbox_pred(x)
