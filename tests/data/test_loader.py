"""TrainLoader: batch contents, difficult exclusion, determinism and exact resume, workers."""

from __future__ import annotations

import pytest
import torch

from ohem_tune.config import Config
from ohem_tune.data.build import build_dataset
from ohem_tune.data.loader import TrainLoader


def _take(loader: TrainLoader, n: int) -> list:
    return [next(loader) for _ in range(n)]


def _same(a, b) -> bool:
    return (
        torch.equal(a.images, b.images)
        and a.record_indices == b.record_indices
        and a.scales == b.scales
        and all(torch.equal(x, y) for x, y in zip(a.rois, b.rois, strict=True))
    )


@pytest.fixture()
def train_set(tiny_cfg: Config):
    return build_dataset(tiny_cfg, "train")


def test_batches_hold_scaled_gt_then_proposals(tiny_cfg: Config, train_set):
    tiny_cfg.input.scales = [64, 128]
    tiny_cfg.input.max_size = 1000
    with TrainLoader(train_set, tiny_cfg, seed=3) as loader:
        batches = _take(loader, 6)
    seen_scales = set()
    for batch in batches:
        assert batch.images.shape[0] == tiny_cfg.solver.ims_per_batch
        for i, idx in enumerate(batch.record_indices):
            record = train_set.records[idx]
            scale = batch.scales[i]
            short = round(min(record.width, record.height) * scale)
            seen_scales.add(short)
            h, w = batch.image_sizes[i]
            assert (h, w) == (round(record.height * scale), round(record.width * scale))
            assert batch.images[i, :, h:, :].abs().sum() == 0  # zero padding
            keep = ~record.difficult
            g = int(keep.sum())
            # RoIs and GT in the record's own pixels (matched there, pooled at batch.scales)
            assert torch.equal(batch.gt_boxes[i], torch.from_numpy(record.boxes[keep]))
            assert torch.equal(batch.rois[i][:g], batch.gt_boxes[i])
            assert len(batch.rois[i]) == g + len(record.proposals)
            assert torch.equal(batch.rois[i][g:], torch.from_numpy(record.proposals))
            assert torch.equal(batch.gt_labels[i], torch.from_numpy(record.labels[keep]))
    assert seen_scales == {64, 128}


def test_difficult_objects_kept_when_asked(tiny_cfg: Config, train_set):
    with_difficult = [i for i, r in enumerate(train_set.records) if r.difficult.any()]
    assert with_difficult, "the tiny preset should contain difficult objects"
    tiny_cfg.dataset.use_difficult = True
    loader = TrainLoader(train_set, tiny_cfg, seed=0)
    for _ in range(len(train_set)):
        batch = next(loader)
        for i, idx in enumerate(batch.record_indices):
            assert len(batch.gt_boxes[i]) == len(train_set.records[idx].boxes)
    loader.close()


def test_every_image_once_per_epoch(tiny_cfg: Config, train_set):
    n = tiny_cfg.solver.ims_per_batch
    loader = TrainLoader(train_set, tiny_cfg, seed=1)
    epoch = [i for b in _take(loader, len(train_set) // n) for i in b.record_indices]
    loader.close()
    assert sorted(epoch) == list(range(len(train_set)))


def test_resume_reproduces_stream_bit_for_bit(tiny_cfg: Config, train_set):
    full = _take(TrainLoader(train_set, tiny_cfg, seed=7), 12)
    resumed = _take(TrainLoader(train_set, tiny_cfg, seed=7, start_iter=9), 3)
    assert all(_same(a, b) for a, b in zip(full[9:], resumed, strict=True))
    other = _take(TrainLoader(train_set, tiny_cfg, seed=8), 12)
    assert [b.record_indices for b in other] != [b.record_indices for b in full]


def test_workers_give_the_same_stream(tiny_cfg: Config, train_set):
    in_process = _take(TrainLoader(train_set, tiny_cfg, seed=5, start_iter=4), 5)
    tiny_cfg.dataset.num_workers = 2
    loader = TrainLoader(train_set, tiny_cfg, seed=5, start_iter=4)
    with_workers = _take(loader, 5)
    loader.close()
    assert all(_same(a, b) for a, b in zip(in_process, with_workers, strict=True))
    assert loader.iteration == 9


def test_corrupt_image_is_one_line_data_error(tiny_cfg: Config, train_set, tmp_path):
    from ohem_tune.errors import DataError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    for r in train_set.records:
        r.path = bad
    tiny_cfg.dataset.num_workers = 1
    loader = TrainLoader(train_set, tiny_cfg, seed=0)
    with pytest.raises(DataError) as err:
        next(loader)
    loader.close()
    assert "broken.jpg: unreadable or corrupt image" in str(err.value)
    assert "\n" not in str(err.value) and "iteration 0" in str(err.value)


def test_close_then_next_continues_the_stream(tiny_cfg: Config, train_set):
    tiny_cfg.dataset.num_workers = 1
    reference = TrainLoader(train_set, tiny_cfg, seed=4)
    loader = TrainLoader(train_set, tiny_cfg, seed=4)
    _take(loader, 3)
    loader.close()  # the worker had prefetched ahead; those batches must not be skipped
    after = next(loader)
    loader.close()
    assert loader.iteration == 4
    assert _same(after, reference.batch(3))


def test_size_divisibility_pads_images_only(tiny_cfg: Config, train_set):
    """While cuDNN autotunes, images are padded to a multiple of 32; nothing else changes."""
    tiny_cfg.dataset.num_workers = 0
    plain = [TrainLoader(train_set, tiny_cfg, seed=2).batch(i) for i in range(4)]
    padded = [TrainLoader(train_set, tiny_cfg, seed=2, size_divisibility=32).batch(i)
              for i in range(4)]  # fmt: skip
    for a, b in zip(plain, padded, strict=True):
        h, w = a.images.shape[2:]
        assert b.images.shape[2] % 32 == 0 and b.images.shape[3] % 32 == 0
        assert h <= b.images.shape[2] < h + 32 and w <= b.images.shape[3] < w + 32
        assert torch.equal(b.images[:, :, :h, :w], a.images)
        assert b.images[:, :, h:].abs().sum() == 0 and b.images[:, :, :, w:].abs().sum() == 0
        assert b.image_sizes == a.image_sizes and b.scales == a.scales
        assert all(torch.equal(x, y) for x, y in zip(a.rois, b.rois, strict=True))
        assert all(torch.equal(x, y) for x, y in zip(a.gt_boxes, b.gt_boxes, strict=True))
    assert any(a.images.shape != b.images.shape for a, b in zip(plain, padded, strict=True))
