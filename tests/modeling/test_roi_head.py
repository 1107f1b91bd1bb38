"""The head's read-only dropout: nn.Dropout's distribution, drawn cheaper, only without a graph."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ohem_tune.modeling.roi_head import FastRCNNHead, readonly_dropout


def test_readonly_dropout_keeps_one_minus_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(400, 500)
    out = readonly_dropout(x.clone(), nn.Dropout(0.3).train())
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01  # 200k draws: sd ~0.001
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))


def test_readonly_dropout_is_the_identity_in_eval_mode_and_without_dropout():
    x = torch.randn(8, 16)
    assert torch.equal(readonly_dropout(x.clone(), nn.Dropout(0.5).eval()), x)
    assert torch.equal(readonly_dropout(x.clone(), nn.Identity()), x)


def test_readonly_dropout_refuses_a_tensor_in_a_graph():
    x = torch.randn(4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        readonly_dropout(x * 1.0, nn.Dropout(0.5).train())


def test_readonly_head_draws_from_the_global_rng_reproducibly():
    head = FastRCNNHead(32, num_classes=3, fc6_dim=24, fc7_dim=24, dropout=0.5).train()
    pooled = torch.randn(10, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        a = head(pooled, readonly=True)
        torch.manual_seed(1)
        b = head(pooled, readonly=True)
        torch.manual_seed(2)
        c = head(pooled, readonly=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])  # masks are drawn, not fixed
    assert head.training  # the module's mode is untouched


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_readonly_dropout_mask_does_not_depend_on_the_activation_dtype(dtype: torch.dtype):
    """Under autocast the replayed exact pass sees fp16/bf16 activations, the approximate pass
    fp32 ones: from the same RNG state both must drop the same units."""
    x = torch.rand(300, 200) + 0.5  # no zeros before dropout
    torch.manual_seed(3)
    full = readonly_dropout(x.clone(), nn.Dropout(0.5).train())
    torch.manual_seed(3)
    half = readonly_dropout(x.to(dtype), nn.Dropout(0.5).train())
    assert half.dtype == dtype
    assert torch.equal(full != 0, half != 0)
