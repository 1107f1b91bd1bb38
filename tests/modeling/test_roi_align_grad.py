"""The separable roi_align backward against torchvision's own kernel."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from ohem_tune.modeling.roi_align_grad import axis_weights, roi_align_separable
from ohem_tune.modeling.roi_head import RoIPooler


def _rois(num: int, images: int, extent: float, generator: torch.Generator) -> torch.Tensor:
    """Random continuous boxes, some partly or wholly off the map, some tiny, some huge."""
    xy = torch.rand(num, 2, generator=generator, dtype=torch.float64) * (extent + 16) - 12
    wh = torch.rand(num, 2, generator=generator, dtype=torch.float64) ** 2 * extent + 0.25
    image = torch.randint(0, images, (num, 1), generator=generator).double()
    return torch.cat([image, xy, xy + wh], dim=1)


def _torchvision_grads(features, rois, grad, size, scale, ratio):
    leaf = features.detach().clone().requires_grad_()
    roi_align(leaf, rois, size, scale, ratio, aligned=True).backward(grad)
    return leaf.grad


@pytest.mark.parametrize("ratio", [1, 2, 3])
@pytest.mark.parametrize("height,width", [(16, 16), (9, 13)])
def test_forward_is_torchvisions_and_gradient_matches(ratio, height, width):
    gen = torch.Generator().manual_seed(ratio * 100 + height)
    features = torch.randn(2, 5, height, width, generator=gen, dtype=torch.float64)
    rois = _rois(150, 2, 8.0 * max(height, width), gen)  # stride 8: boxes in image pixels
    size, scale = 7, 1.0 / 8
    leaf = features.clone().requires_grad_()
    out = roi_align_separable(leaf, rois, size, scale, ratio)
    assert torch.equal(out, roi_align(features, rois, size, scale, ratio, aligned=True))
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    out.backward(grad)
    want = _torchvision_grads(features, rois, grad, size, scale, ratio)
    assert want.abs().max() > 1.0  # the check is not vacuous
    torch.testing.assert_close(leaf.grad, want, rtol=0, atol=1e-12)


def test_float32_gradient_matches_to_rounding_and_rois_on_one_image():
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(2, 64, 16, 16, generator=gen)
    rois = _rois(300, 1, 128.0, gen).float()  # every RoI on image 0: image 1 gets no gradient
    leaf = features.clone().requires_grad_()
    out = roi_align_separable(leaf, rois, 7, 1 / 8, 2)
    grad = torch.randn(out.shape, generator=gen)
    out.backward(grad)
    want = _torchvision_grads(features, rois, grad, 7, 1 / 8, 2)
    torch.testing.assert_close(leaf.grad, want, rtol=1e-5, atol=1e-4)
    assert not leaf.grad[1].any()


def test_gradcheck_and_no_rois():
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = _rois(6, 1, 40.0, gen)
    assert torch.autograd.gradcheck(
        lambda f: roi_align_separable(f, rois, 3, 1 / 8, 2), (features,)
    )
    empty = roi_align_separable(features, rois[:0], 3, 1 / 8, 2)
    empty.sum().backward()
    assert empty.shape == (0, 2, 3, 3) and not features.grad.any()


def test_axis_weights_sum_to_the_in_map_fraction_of_samples():
    # a bin wholly inside the map spreads weight 1; samples beyond -1 or past the end count 0
    start = torch.tensor([2.0, -30.0, 100.0], dtype=torch.float64)
    end = torch.tensor([10.0, -20.0, 120.0], dtype=torch.float64)
    weights = axis_weights(start, end, bins=4, samples=2, length=16)
    torch.testing.assert_close(weights[0].sum(1), torch.ones(4, dtype=torch.float64))
    assert not weights[1].any() and not weights[2].any()


def test_pooler_uses_it_only_for_cpu_training():
    pooler = RoIPooler("roi_align", 7, 1 / 8, sampling_ratio=2)
    rois = torch.tensor([[0.0, 4.0, 4.0, 60.0, 50.0]])
    features = torch.randn(1, 3, 16, 16, requires_grad=True)
    assert type(pooler(features, rois).grad_fn).__name__ == "_RoIAlignBackward"
    with torch.no_grad():
        plain = pooler(features, rois)
    assert torch.equal(plain, pooler(features, rois))  # same forward either way
    adaptive = RoIPooler("roi_align", 7, 1 / 8, sampling_ratio=0)
    assert type(adaptive(features, rois).grad_fn).__name__ != "_RoIAlignBackward"
