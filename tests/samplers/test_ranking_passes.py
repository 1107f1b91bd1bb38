"""Approximate ranking passes: exact when nothing is truncated, no autograd state, same masks."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.errors import ConfigError
from ohem_tune.samplers import RankingPass, build_sampler
from ohem_tune.samplers.ranking import build_ranking_pass
from ohem_tune.samplers.ranking.channels import top_eigenvectors
from tests.samplers.ranking_helpers import ohem_config, tiny_minibatch

FULL = {"fast": None, "lowrank": 4096, "channels": 4096}  # rank >= any data rank here
CASES = [("fast", "roi_align"), ("fast", "roi_pool"), ("lowrank", "roi_align"),
         ("lowrank", "roi_pool"), ("channels", "roi_align")]  # fmt: skip


def _run(pass_, sampler, targets, seed: int = 7):
    torch.manual_seed(seed)
    chosen = sampler.select(targets, pass_).indices
    return chosen, pass_.losses(), torch.get_rng_state()


@pytest.mark.parametrize(("method", "roi_op"), CASES)
def test_untruncated_float32_pass_selects_exactly_the_exact_pass_rois(method: str, roi_op: str):
    model, features, targets, norm = tiny_minibatch(roi_op)
    cfg = ohem_config(ranking=method, ranking_rank=FULL[method])
    sampler = build_sampler(cfg, 2)
    exact = _run(RankingPass(model, features, targets, norm), sampler, targets)
    approx = _run(build_ranking_pass(cfg, model, features, targets, norm), sampler, targets)
    assert torch.equal(approx[0], exact[0])
    assert torch.equal(approx[2], exact[2])  # same RNG draws: the same dropout masks
    if method == "fast":  # the same maths, faster kernels: bit for bit
        assert all(torch.equal(a, e) for a, e in zip(approx[1], exact[1], strict=True))
    else:
        for a, e in zip(approx[1], exact[1], strict=True):
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("method", "roi_op"), [c for c in CASES if c[0] != "fast"])
def test_truncating_the_rank_approximates_and_more_rank_is_closer(method: str, roi_op: str):
    model, features, targets, norm = tiny_minibatch(roi_op, dropout=0.0)
    exact_cls = RankingPass(model, features, targets, norm).losses()[0]

    def error(rank: int) -> float:
        cfg = ohem_config(ranking=method, ranking_rank=rank)
        approx_cls = build_ranking_pass(cfg, model, features, targets, norm).losses()[0]
        return float((approx_cls - exact_cls).abs().max())

    assert error(2) > error(8) > 1e-7
    assert error(2) > error(4096)


@pytest.mark.parametrize(("method", "roi_op"), CASES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_approximate_pass_records_no_autograd_state(method: str, roi_op: str, dtype: str):
    model, features, targets, norm = tiny_minibatch(roi_op)
    features = features.detach().requires_grad_(True)  # a leaf that wants grad
    rank = {"fast": None, "lowrank": 8, "channels": 4}[method]
    cfg = ohem_config(ranking=method, ranking_rank=rank, ranking_dtype=dtype)
    lc, lb = build_ranking_pass(cfg, model, features, targets, norm).losses()
    assert lc.shape == lb.shape == (len(targets),)
    assert lc.dtype == lb.dtype == torch.float32
    for out in (lc, lb):
        assert not out.requires_grad and out.grad_fn is None
    with pytest.raises(RuntimeError):
        lc.sum().backward()
    assert features.grad is None
    assert all(p.grad is None for p in model.parameters())
    assert model.roi_head.training


def test_bfloat16_changes_the_losses_only_slightly():
    model, features, targets, norm = tiny_minibatch(dropout=0.0)
    exact = RankingPass(model, features, targets, norm).losses()[0]
    cfg = ohem_config(ranking="fast", ranking_dtype="bfloat16")
    low = build_ranking_pass(cfg, model, features, targets, norm).losses()[0]
    assert not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, rtol=2e-2, atol=2e-2)


def test_pass_keeps_the_exact_chunks_dropout_and_eval_switch():
    model, features, targets, norm = tiny_minibatch()
    cfg = ohem_config(ranking="fast")

    def run(dropout: bool, chunk: int | None = None) -> torch.Tensor:
        torch.manual_seed(3)
        exact = RankingPass(model, features, targets, norm, dropout, chunk_size=chunk).losses()
        torch.manual_seed(3)
        approx = build_ranking_pass(cfg, model, features, targets, norm, dropout, chunk)
        assert torch.equal(approx.losses()[0], exact[0])
        return exact[0]

    assert not torch.equal(run(True), run(True, chunk=50))  # other chunks: other mask draws
    torch.testing.assert_close(run(False), run(False, chunk=50))  # no dropout: chunks moot


def test_channels_refuses_max_pooling():
    model, features, targets, norm = tiny_minibatch("roi_pool")
    ranking = build_ranking_pass(ohem_config(ranking="channels"), model, features, targets, norm)
    with pytest.raises(ConfigError, match="roi_align"):
        ranking.losses()


def test_sampling_ratio_is_the_models_unless_set_and_needs_roi_align():
    model, features, targets, norm = tiny_minibatch(dropout=0.0)
    exact = RankingPass(model, features, targets, norm).losses()[0]

    def cls_loss(**knobs: object) -> torch.Tensor:
        cfg = ohem_config(ranking="fast", **knobs)
        return build_ranking_pass(cfg, model, features, targets, norm).losses()[0]

    assert model.pooler.sampling_ratio == 2
    assert torch.equal(cls_loss(ranking_sampling_ratio=2), exact)
    sparse = cls_loss(ranking_sampling_ratio=1)
    assert not torch.equal(sparse, exact)
    torch.testing.assert_close(sparse, exact, rtol=0.05, atol=0.05)
    model, features, targets, norm = tiny_minibatch("roi_pool")
    cfg = ohem_config(ranking="lowrank", ranking_sampling_ratio=1)
    with pytest.raises(ConfigError, match="ranking_sampling_ratio.*roi_align"):
        build_ranking_pass(cfg, model, features, targets, norm).losses()


def test_channels_basis_spans_the_top_eigenvectors_without_drawing_global_rng():
    torch.manual_seed(0)
    c, rank = 64, 8
    rotation = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64)).Q
    spectrum = 0.7 ** torch.arange(c, dtype=torch.float64)  # decaying, like conv features
    scatter = rotation @ torch.diag(spectrum) @ rotation.T
    state = torch.get_rng_state()
    basis = top_eigenvectors(scatter, rank)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(basis.T @ basis, torch.eye(rank, dtype=torch.float64), atol=1e-10)
    top = rotation[:, :rank]  # the true top-rank eigenvectors
    # the two subspaces coincide: the projection of one onto the other keeps all of it
    assert torch.linalg.norm(basis.T @ top) ** 2 > rank - 1e-3
    assert torch.equal(top_eigenvectors(scatter, rank), basis)  # deterministic
    assert torch.equal(top_eigenvectors(scatter, c), torch.eye(c, dtype=torch.float64))


def test_channels_basis_decomposes_directly_when_the_sketch_spans_everything():
    scatter = torch.randn(10, 10, dtype=torch.float64)
    scatter = scatter @ scatter.T
    basis = top_eigenvectors(scatter, 9)  # 9 + oversampling >= 10
    want = torch.linalg.eigh(scatter)[1][:, -9:]
    assert torch.allclose(basis @ basis.T, want @ want.T, atol=1e-10)
    with pytest.raises(ValueError, match="at least 1"):
        top_eigenvectors(scatter, 0)


def test_channels_pass_takes_half_precision_feature_maps():
    """Under CUDA autocast the trunk's map is fp16/bf16; the basis is found in fp32 (QR has no
    half kernels), and the losses stay close to those from the fp32 map."""
    model, features, targets, norm = tiny_minibatch("roi_align")
    cfg = ohem_config(ranking="channels", ranking_rank=4)
    with torch.no_grad():
        want = build_ranking_pass(cfg, model, features, targets, norm, dropout=False).losses()
        got = build_ranking_pass(
            cfg, model, features.bfloat16(), targets, norm, dropout=False
        ).losses()
    torch.testing.assert_close(got[0], want[0], rtol=0.05, atol=0.05)
