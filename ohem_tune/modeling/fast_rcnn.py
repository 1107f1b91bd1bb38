"""FastRCNN: trunk -> RoI pooling -> head, plus box decoding with the saved target statistics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ohem_tune.modeling.boxes import decode
from ohem_tune.modeling.roi_head import FastRCNNHead, RoIPooler

DEFAULT_BBOX_STDS = (0.1, 0.1, 0.2, 0.2)


class FastRCNN(nn.Module):
    """Fast R-CNN (Girshick, ICCV 2015) with the contract in docs/ARCHITECTURE.md ("Model").

    `bbox_means` / `bbox_stds` are (K+1, 4) buffers: the head predicts normalised deltas
    ((t - mean) / std per class), and `decode_boxes` un-normalises with them. They are part of
    the state dict, so a checkpoint decodes exactly as the model was trained.
    """

    def __init__(
        self,
        trunk: nn.Module,
        pooler: RoIPooler,
        head: FastRCNNHead,
        num_classes: int,
        feature_stride: int,
        bbox_stds: Sequence[float] = DEFAULT_BBOX_STDS,
    ):
        super().__init__()
        self.trunk = trunk
        self.pooler = pooler
        self.roi_head = head
        self.num_classes = num_classes
        self.feature_stride = feature_stride
        stds = torch.tensor(bbox_stds, dtype=torch.float32).expand(num_classes + 1, 4)
        self.register_buffer("bbox_means", torch.zeros(num_classes + 1, 4))
        self.register_buffer("bbox_stds", stds.clone())

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, C, ~H/s, ~W/s) conv features."""
        return self.trunk(images)

    def pool(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """(R, 5) [batch_idx, x1, y1, x2, y2] in resized-image pixels -> (R, C, P, P)."""
        return self.pooler(features, rois)

    def head(
        self, pooled: torch.Tensor, readonly: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, C, P, P) -> cls logits (R, K+1) and normalised deltas (R, 4 * (K+1)).

        `readonly`: a no-grad pass (OHEM's ranking); see FastRCNNHead.forward."""
        return self.roi_head(pooled, readonly=readonly)

    def forward(
        self, images: torch.Tensor, rois: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and deltas for rois (R, 5) over images: features -> pool -> head."""
        return self.head(self.pool(self.features(images), rois))

    def decode_boxes(self, rois: torch.Tensor, bbox_deltas: torch.Tensor) -> torch.Tensor:
        """Per-class boxes (R, K+1, 4), inclusive pixels, from rois (R, 4) and normalised deltas."""
        deltas = bbox_deltas.reshape(bbox_deltas.shape[0], bbox_deltas.shape[1] // 4, 4).float()
        deltas = deltas * self.bbox_stds + self.bbox_means
        return decode(rois[:, -4:].float(), deltas)

    def normalize_targets(self, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Raw (R, 4) targets of RoIs labelled `labels` -> the head's normalised space."""
        return (targets - self.bbox_means[labels]) / self.bbox_stds[labels]

    @torch.no_grad()
    def set_target_stats(self, means: torch.Tensor, stds: torch.Tensor) -> None:
        """Install (K+1, 4) or (4,) target means/stds (e.g. computed from the training set)."""
        self.bbox_means.copy_(means.to(self.bbox_means).expand_as(self.bbox_means))
        self.bbox_stds.copy_(stds.to(self.bbox_stds).expand_as(self.bbox_stds))
