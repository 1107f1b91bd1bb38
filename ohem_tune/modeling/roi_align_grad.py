"""roi_align with a separable backward for CPU training.

torchvision's CPU roi_align backward scatters every bilinear sample into the feature map one
channel at a time; over the RoIs of a training step it costs 6-7x its forward (e.g. 449 ms vs
70 ms for 800 RoIs x 224 channels on one thread; the separable backward below takes ~40 ms).
With a fixed sampling ratio, roi_align's sampling is separable: each pooled value is
sum_y sum_x Ay[r, p, y] F[c, y, x] Ax[r, q, x], where Ay / Ax hold the averaged bilinear weights
of the bin's sample rows / columns (torchvision's border rules are per axis too). The feature
gradient is then two small matrix products per RoI chunk. The forward stays torchvision's own,
so pooled values, evaluation and the OHEM ranking pass are unchanged bit for bit; gradients
differ from torchvision's by float summation order.
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

_CHUNK = 64  # RoIs per matrix product: keeps the (RoIs, H, C, P) intermediate in cache


def axis_weights(start: torch.Tensor, end: torch.Tensor, bins: int, samples: int, length: int):
    """(R, bins, length): the weight of each feature row (or column) in each bin, averaged over
    the bin's `samples` bilinear sample points, as torchvision's roi_align (aligned) places them.

    `start` / `end` are the RoIs' scaled continuous coordinates along this axis (offset applied).
    """
    dtype = start.dtype
    bin_size = (end - start) / bins
    ph = torch.arange(bins, dtype=dtype, device=start.device)
    iy = torch.arange(samples, dtype=dtype, device=start.device) + 0.5
    # torchvision: start + ph * bin_size + (iy + .5) * bin_size / grid, in this order
    pos = (
        start[:, None, None]
        + ph[None, :, None] * bin_size[:, None, None]
        + iy[None, None, :] * bin_size[:, None, None] / samples
    )
    inside = ((pos >= -1.0) & (pos <= length)).to(dtype)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    last = low >= length - 1
    low = torch.where(last, torch.full_like(low, length - 1), low)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(pos), pos - low.to(dtype))
    weights = pos.new_zeros(*pos.shape, length)
    weights.scatter_add_(3, low[..., None], ((1.0 - frac) * inside)[..., None])
    weights.scatter_add_(3, high[..., None], (frac * inside)[..., None])
    return weights.sum(2) / samples


def roi_align_feature_grad(
    grad: torch.Tensor,
    rois: torch.Tensor,
    feature_shape: torch.Size,
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """d(loss)/d(features) of roi_align(aligned=True) given `grad` (R, C, P, P) of its output."""
    num_images, channels, height, width = feature_shape
    bins = grad.shape[-1]
    scaled = rois[:, 1:].to(grad.dtype) * spatial_scale - 0.5
    along_y = axis_weights(scaled[:, 1], scaled[:, 3], bins, sampling_ratio, height)
    along_x = axis_weights(scaled[:, 0], scaled[:, 2], bins, sampling_ratio, width)
    image_of = rois[:, 0].long()
    out = grad.new_zeros(num_images, channels * height, width)
    for image in range(num_images):
        index = (image_of == image).nonzero().squeeze(1)
        for start in range(0, index.numel(), _CHUNK):
            chunk = index[start : start + _CHUNK]
            n = chunk.numel()
            g = grad[chunk].transpose(1, 2).reshape(n, bins, channels * bins)  # (n, P, C*Q)
            rows = torch.bmm(along_y[chunk].transpose(1, 2), g)  # (n, H, C*Q)
            rows = rows.reshape(n, height, channels, bins).permute(2, 1, 0, 3)
            out[image].addmm_(rows.reshape(channels * height, n * bins),
                              along_x[chunk].reshape(n * bins, width))  # fmt: skip
    return out.reshape(feature_shape)


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio):
        ctx.save_for_backward(rois)
        ctx.meta = (features.shape, spatial_scale, sampling_ratio)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=True)

    @staticmethod
    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        shape, spatial_scale, sampling_ratio = ctx.meta
        features_grad = roi_align_feature_grad(
            grad.contiguous(), rois, shape, spatial_scale, sampling_ratio
        )
        return features_grad, None, None, None, None


def roi_align_separable(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """torchvision's roi_align(aligned=True) forward with the separable backward (fixed ratio)."""
    if sampling_ratio <= 0:
        raise ValueError("the separable roi_align backward needs a fixed sampling_ratio > 0")
    return _RoIAlign.apply(features, rois, output_size, spatial_scale, sampling_ratio)
