"""Config loading: defaults, YAML + --set overrides, and one-line errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ohem_tune.config import Config, ConfigError, load_config, parse_overrides


def write(tmp_path: Path, tree: object, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree) if not isinstance(tree, str) else tree)
    return path


def test_defaults_follow_the_paper() -> None:
    cfg = Config()
    assert (cfg.solver.ims_per_batch, cfg.sampler.rois_per_batch) == (2, 128)
    assert cfg.sampler.fg_fraction == 0.25 and cfg.sampler.bg_lo == 0.1
    assert cfg.solver.momentum == 0.9 and cfg.solver.weight_decay == 5e-4
    assert cfg.test.nms_thresh == 0.3 and cfg.input.scales == [600]


def test_yaml_then_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, {"solver": {"lr": 0.01}, "sampler": {"name": "ohem", "bg_lo": 0.0}})
    cfg = load_config(path, ["solver.lr=0.003", "test.scales=[480, 600]"])
    assert cfg.solver.lr == 0.003
    assert cfg.test.scales == [480, 600]
    assert cfg.sampler.name == "ohem" and cfg.sampler.bg_lo == 0.0


def test_round_trip_and_hash_stability(tmp_path: Path) -> None:
    cfg = load_config(overrides=["solver.lr=0.002"])
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again == cfg and again.hash() == cfg.hash()
    assert load_config(overrides=["solver.lr=0.003"]).hash() != cfg.hash()


def test_flat_uses_dotted_keys() -> None:
    flat = Config().flat()
    assert flat["solver.lr"] == 1e-3 and flat["sampler.name"] == "heuristic"
    assert flat["dataset.synthetic.preset"] == "small"


BAD_CONFIGS = [
    ({"solver": {"lr": -1}}, "solver.lr", "greater than 0"),
    ({"solver": {"lrr": 0.1}}, "solver.lrr", "did you mean 'lr'"),
    ({"solvr": {"lr": 0.1}}, "solvr", "did you mean 'solver'"),
    ({"sampler": {"bg_lo": 0.6}}, "sampler.bg_lo", "bg_hi"),
    ({"sampler": {"fg_fraction": 1.5}}, "sampler.fg_fraction", "less than or equal to 1"),
    ({"sampler": {"rois_per_batch": 127}}, "sampler.rois_per_batch", "divide"),
    ({"sampler": {"mining": "per_roi"}}, "sampler.mining", "per_image"),
    ({"solver": {"ims_per_batch": 0}}, "solver.ims_per_batch", "greater than or equal to 1"),
    ({"solver": {"steps": [30000, 10000]}}, "solver.steps", "increasing"),
    ({"solver": {"amp": "fp8"}}, "solver.amp", "bf16"),
    ({"model": {"backbone": "vgg19"}}, "model.backbone", "vgg16"),
    ({"model": {"roi_op": "roi_warp"}}, "model.roi_op", "roi_align"),
    ({"model": {"dropout": 1.0}}, "model.dropout", "less than 1"),
    ({"dataset": {"format": "voc"}}, "dataset.root", "needs dataset.root"),
    ({"dataset": {"format": "kitti"}}, "dataset.format", "coco"),
    ({"dataset": {"synthetic": {"preset": "huge"}}}, "dataset.synthetic.preset", "tiny"),
    ({"input": {"scales": [8]}}, "input.scales", ">= 16"),
    ({"input": {"scales": []}}, "input.scales", "at least 1"),
    ({"train": {"device": "tpu"}}, "train.device", "cuda"),
    ({"train": {"max_iter": "many"}}, "train.max_iter", "integer"),
    ({"test": {"nms_thresh": 0}}, "test.nms_thresh", "greater than 0"),
    ({"test": {"metric": "voc12"}}, "test.metric", "voc07"),
    ({"test": {"max_per_imag": 100}}, "test.max_per_imag", "did you mean 'max_per_image'"),
]


@pytest.mark.parametrize(("tree", "field", "hint"), BAD_CONFIGS, ids=[b[1] for b in BAD_CONFIGS])
def test_bad_config_names_file_field_and_fix(
    tmp_path: Path, tree: dict, field: str, hint: str
) -> None:
    path = write(tmp_path, tree)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert f"{field}:" in message
    assert hint in message


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["solver.lr"])
    with pytest.raises(ConfigError, match=r"--set.*solver\.lr: bad value 'fast'"):
        load_config(overrides=["solver.lr=fast"])


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = write(tmp_path, "solver: {lr: [1, 2\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line \d+: invalid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n", "list.yaml"))


@pytest.mark.parametrize("name", ["local.yaml", "vgg16_voc07.yaml", "vggm_voc07.yaml"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    from ohem_tune.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / name)
    if cfg.dataset.format == "voc":  # the paper configs: data prepare's layout, the paper protocol
        from ohem_tune.data.prepare import WEIGHTS

        assert cfg.model.weights == Path("data") / WEIGHTS[cfg.model.backbone]
        assert (cfg.test.max_per_image, cfg.test.score_thresh) == (2000, 0.00001)
        assert (cfg.test.detections_per, cfg.test.batch_images) == ("image", 1)
