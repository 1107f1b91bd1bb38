"""Spec loading, validation messages and expansion into trials (no Ray, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ohem_tune import tracking_keys as tk
from ohem_tune.errors import ConfigError
from ohem_tune.spec import build_spec, load_spec

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"


def write_spec(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def minimal(**extra) -> dict:
    return {
        "name": "t",
        "base": {"train": {"max_iter": 10}},
        "variants": [
            {"name": "a", "baseline": True, "set": {"sampler.name": "heuristic"}},
            {"name": "b", "set": {"sampler.name": "ohem", "sampler.bg_lo": 0.0}},
        ],
        **extra,
    }


def test_paper_ablation_has_every_table1_row_with_paper_numbers():
    spec = load_spec(SPACES / "paper_ablation.yaml")
    papers = [v.paper for v in spec.variants]
    assert len(spec.variants) == 13
    assert sorted(papers) == sorted(
        [59.6, 67.2, 69.7, 62.0, 69.9, 57.2, 67.5, 66.3, 66.3, 57.7, 60.4, 67.5, 68.7]
    )
    baselines = {v.model for v in spec.variants if v.baseline}
    assert baselines == {"VGGM", "VGG16"}


def test_paper_ablation_expands_to_rows_times_seeds_with_distinct_ids():
    spec = load_spec(SPACES / "paper_ablation.yaml")
    trials = spec.expand()
    assert len(trials) == 13 * 3
    assert len({t.trial_id for t in trials}) == 39
    assert {t.seed for t in trials} == {0, 1, 2}
    # The local profile keeps the paper's LR ratios (1e-3 : 4e-3 : 3e-3) and swaps the trunks.
    by_name = {t.variant: t.config for t in trials if t.seed == 0}
    assert by_name["allrois_vggm_n2"].solver.lr == pytest.approx(4 * by_name["frcn_vggm"].solver.lr)
    assert by_name["allrois_vgg16_n2"].solver.lr == pytest.approx(
        3 * by_name["frcn_vgg16"].solver.lr
    )
    assert by_name["frcn_vgg16"].model.backbone == "small_vgg16"
    assert by_name["ohem_vgg16_n1"].solver.ims_per_batch == 1
    paper = {t.variant: t.config for t in spec.expand(profile="paper")}
    assert paper["frcn_vgg16"].model.backbone == "vgg16"
    assert paper["frcn_vgg16"].solver.lr == pytest.approx(1e-3)
    assert paper["frcn_vgg16"].dataset.format == "voc"


@pytest.mark.parametrize(
    "name", ["paper_ablation.yaml", "paper_multiscale_bbox.yaml", "ohem_hpo.yaml", "ohem_fast.yaml"]
)
def test_paper_profiles_follow_each_trunks_weights_and_test_one_image_at_a_time(name):
    # VGG16 rows read torchvision's vgg16-397923af.pth (what `data prepare` lays at vgg16.pth),
    # VGG_CNN_M_1024 rows the Caffe-converted model: each row's pixels follow its own weights
    for trial in load_spec(SPACES / name).expand(profile="paper"):
        model = trial.config.model
        want = {"vgg16": "torchvision", "vgg_cnn_m_1024": "caffe"}[model.backbone]
        assert model.weights_format == want, (trial.variant, model.weights_format)
        assert trial.config.test.batch_images == 1  # as test_net.py: no zero padding
        assert trial.config.test.max_images is None  # the whole test split, as the paper


@pytest.mark.parametrize(
    "name",
    [
        "paper_ablation.yaml",
        "paper_multiscale_bbox.yaml",
        "ohem_hpo.yaml",
        "smoke.yaml",
        "ohem_fast.yaml",
    ],
)
def test_shipped_specs_validate_in_every_profile(name):
    spec = load_spec(SPACES / name)
    for profile in [None, *spec.profiles]:
        trials = spec.expand(profile=profile)
        assert trials, f"{name} profile {profile} expands to no trials"


def test_multiscale_bbox_table_has_eight_settings_per_method():
    spec = load_spec(SPACES / "paper_multiscale_bbox.yaml")
    trials = spec.expand(seeds=1)
    assert len(trials) == 16
    settings = {
        (
            t.label,
            len(t.config.input.scales) > 1,
            len(t.config.test.scales) > 1,
            t.config.test.iterative_bbox,
        )
        for t in trials
    }
    assert len(settings) == 16
    local_scales = {s for t in trials for s in t.config.input.scales + t.config.test.scales}
    assert max(local_scales) <= 256  # fits the 128 px synthetic images


def test_trial_identity_is_config_hash_plus_seed(tmp_path):
    spec = load_spec(write_spec(tmp_path, minimal(seeds=[0, 5])))
    trials = spec.expand()
    assert [t.seed for t in trials] == [0, 5, 0, 5]
    a0, a5 = trials[0], trials[1]
    assert a0.config_hash == a5.config_hash
    assert a0.trial_id == f"{a0.config_hash}-s0" and a5.trial_id == f"{a0.config_hash}-s5"
    assert a5.config.train.seed == 5
    # The same spec expands to the same ids; where a trial runs does not change its identity.
    again = spec.expand(overrides=["dataset.synthetic.cache_dir=/elsewhere", "train.device=cpu"])
    assert [t.trial_id for t in again] == [t.trial_id for t in trials]
    changed = spec.expand(overrides=["solver.lr=0.02"])
    assert changed[0].trial_id != trials[0].trial_id


def test_tags_carry_the_table_layout(tmp_path):
    tree = minimal()
    tree["variants"][0].update(label="Fast R-CNN", model="VGGM", paper=59.6)
    trial = load_spec(write_spec(tmp_path, tree)).expand()[0]
    tags = trial.tags
    assert tags[tk.TAG_VARIANT] == "a"
    assert tags[tk.TAG_LABEL] == "Fast R-CNN"
    assert tags[tk.TAG_MODEL_LABEL] == "VGGM"
    assert tags[tk.TAG_BASELINE] == "true"
    assert tags[tk.TAG_PAPER_MAP] == "59.6"
    assert tags[tk.TAG_VARIANT_ORDER] == "0"
    assert tags[tk.TAG_TRIAL_ID] == trial.trial_id


def test_profile_merge_order_and_by_profile(tmp_path):
    tree = minimal(
        default_profile="small",
        profiles={
            "small": {
                "set": {"train.max_iter": 7, "solver.lr": 0.5},
                "scale": {"solver.lr": 10},
                "seeds": 2,
                "resources": {"cpu": 2},
            }
        },
    )
    tree["variants"][1]["set"]["solver.lr"] = 0.002
    tree["variants"][1]["by_profile"] = {"small": {"sampler.rois_per_batch": 64}}
    trials = load_spec(write_spec(tmp_path, tree)).expand()
    a, b = trials[0].config, trials[2].config
    assert len(trials) == 4
    assert a.train.max_iter == 7
    assert a.solver.lr == pytest.approx(5.0)  # profile set 0.5, scaled x10
    assert b.solver.lr == pytest.approx(0.02)  # the variant wins over the profile, then scaled
    assert b.sampler.rois_per_batch == 64
    assert trials[0].resources.cpu == 2
    overridden = load_spec(write_spec(tmp_path, tree)).expand(seeds=1, overrides=["solver.lr=1"])
    assert len(overridden) == 2 and overridden[0].config.solver.lr == 1  # --set comes last


def claim(**fields) -> dict:
    """A claim over minimal()'s variants: b (ohem) better than a (heuristic)."""
    return {"label": "c", "variant": "b", "baseline": "a", "expect": "better", **fields}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t["variants"][1].update(sett={}),
         "variants[b].sett: unknown key (did you mean 'set'?)"),
        (lambda t: t.update(seeds=0), "seeds: bad value 0"),
        (lambda t: t["variants"][0]["set"].update({"sampler.bg_loo": 0.0}),
         "variant 'a': sampler.bg_loo: unknown key (did you mean 'bg_lo'?)"),
        (lambda t: t["variants"][0]["set"].update({"solver.lr": -1}),
         "variant 'a': solver.lr: bad value -1"),
        (lambda t: t["variants"].append({"name": "a"}), "duplicate name 'a'"),
        (lambda t: t.update(default_profile="nope"), "default_profile 'nope' is not among"),
        (lambda t: t.update(scheduler={"type": "asha"}), "train.eval_period: is 0"),
        (lambda t: t.update(search={"params": {"solver.lrr": {"type": "float", "low": 1e-4,
                                                              "high": 1e-2}}}),
         "search.params.solver.lrr: not a config field (did you mean 'solver.lr'?)"),
        (lambda t: t.update(search={"params": {"solver.lr": {"type": "float", "low": 1,
                                                             "high": 0.1}}}),
         "low (1.0) must be below high (0.1)"),
        (lambda t: t.update(profiles={"p": {"backbone_map": {"vgg16": "vgg17"}}}),
         "backbone_map: unknown trunk 'vgg17'"),
        (lambda t: t.update(claims=[claim(variant="bb")]),
         "claims[c].variant: no variant 'bb' (did you mean 'b'?); name one of the spec's "
         "variants: a, b"),
        (lambda t: t.update(claims=[claim(baseline="b")]),
         "claims[c].baseline: is the claim's variant 'b' itself"),
        (lambda t: t.update(claims=[claim(), claim(variant="a", baseline="b")]),
         "claims[c].label: duplicate label"),
        (lambda t: t.update(claims=[claim(expect="none")]),
         "claims[c]: bad value: margin: required with expect: none"),
        (lambda t: t.update(claims=[claim(margin=1.0, paper_delta=0.8)]),
         "claims[c]: bad value: margin: 1 is not below the paper's |Δ| 0.8; an effect inside "
         "±margin could not contradict expect: better; lower the margin or remove it"),
        (lambda t: t.update(claims=[claim(expect="none", margin=-1)]),
         "claims[c].margin: bad value -1"),
        (lambda t: t.update(claims=[claim(expect="bigger")]),
         "claims[c].expect: bad value 'bigger'"),
        (lambda t: t.update(claims=[claim(metric="train/loss")]),
         "claims[c]: bad value: metric: 'train/loss' has no known direction; set "
         "higher_is_better: true or false"),
        (lambda t: t.update(claims=[claim(paper=2.4)]),
         "claims[c].paper: unknown key (did you mean 'paper_delta'?)"),
    ],
)  # fmt: skip
def test_bad_specs_fail_with_one_line_naming_file_and_field(tmp_path, mutate, expected):
    tree = minimal()
    mutate(tree)
    path = write_spec(tmp_path, tree)
    with pytest.raises(ConfigError) as info:
        load_spec(path).expand()
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert expected in message


def test_unknown_profile_suggests_the_closest(tmp_path):
    spec = load_spec(write_spec(tmp_path, minimal(profiles={"local": {}, "paper": {}})))
    with pytest.raises(ConfigError, match="profile 'papr' is not defined \\(did you mean 'paper'"):
        spec.expand(profile="papr")
    with pytest.raises(ConfigError, match="no variant 'ohme' \\(did you mean 'ohem'"):
        build_spec({"name": "x", "variants": [{"name": "ohem"}]}).variant("ohme")


def test_identical_rows_are_refused(tmp_path):
    tree = minimal()
    tree["variants"][1] = {"name": "c", "set": {"sampler.name": "heuristic"}}
    with pytest.raises(ConfigError, match="variants 'a' and 'c' resolve to the same config"):
        load_spec(write_spec(tmp_path, tree)).expand()


def test_grid_expands_the_cartesian_product(tmp_path):
    tree = minimal(search={"grid": {"solver.lr": [0.001, 0.01], "solver.ims_per_batch": [1, 2]}})
    trials = load_spec(write_spec(tmp_path, tree)).expand()
    assert len(trials) == 2 * 4
    lrs = {
        (t.config.solver.lr, t.config.solver.ims_per_batch)
        for t in trials
        if t.variant.startswith("a@")
    }
    assert lrs == {(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)}


def test_optuna_search_needs_one_seed_and_valid_conditions(tmp_path):
    params = {
        "sampler.name": {"type": "categorical", "choices": ["heuristic", "ohem"]},
        "sampler.nms_thresh": {"type": "float", "low": 0.5, "high": 0.9,
                               "when": {"sampler.name": "ohem"}},
    }  # fmt: skip
    tree = minimal(search={"params": params, "num_samples": 4})  # selects on eval/val/mAP
    tree["base"]["train"]["eval_split"] = "val"
    ok = load_spec(write_spec(tmp_path, tree))
    assert len(ok.expand()) == 2  # templates
    with pytest.raises(ConfigError, match="one seed per sample"):
        ok.expand(seeds=3)
    params["sampler.nms_thresh"]["when"] = {"sampler.nmae": "ohem"}
    tree["search"]["params"] = params
    bad = load_spec(write_spec(tmp_path, tree))
    with pytest.raises(ConfigError, match="when: 'sampler.nmae' is neither a config field"):
        bad.expand()


def test_base_config_path_is_relative_to_the_spec(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("train: {max_iter: 33}\n")
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "../configs/base.yaml"}))
    assert load_spec(path).expand()[0].config.train.max_iter == 33
    path.write_text(yaml.safe_dump({"name": "s", "base": "../configs/missing.yaml"}))
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_spec(path).expand()


def test_spec_layer_imports_neither_torch_nor_ray():
    import subprocess
    import sys

    code = (
        "import sys, ohem_tune.spec as s;"
        "s.load_spec('search_spaces/paper_ablation.yaml').expand();"
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_search_selecting_on_test_is_refused_unless_explicitly_allowed(tmp_path):
    params = {"solver.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    tree = minimal(search={"params": params, "metric": "eval/mAP"})
    path = write_spec(tmp_path, tree)
    with pytest.raises(ConfigError) as info:
        load_spec(path).expand()
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "search.metric: 'eval/mAP' selects on the test split" in message
    assert "eval/val/mAP with train.eval_split: val" in message
    assert "search.allow_test_selection: true" in message
    tree["search"]["allow_test_selection"] = True
    assert len(load_spec(write_spec(tmp_path, tree)).expand()) == 2  # said so explicitly

    # a scheduler's metric selects too (ASHA stops trials on it)
    tree = minimal(scheduler={"type": "asha", "metric": "eval/mAP"})
    tree["base"]["train"]["eval_period"] = 5
    with pytest.raises(ConfigError, match="scheduler.metric: 'eval/mAP' selects on the test"):
        load_spec(write_spec(tmp_path, tree)).expand()
    # a val metric needs val evaluations
    tree = minimal(search={"params": params, "metric": "eval/val/mAP"})
    with pytest.raises(ConfigError, match="train.eval_split: is 'test' but search.metric"):
        load_spec(write_spec(tmp_path, tree)).expand()
    tree["base"]["train"]["eval_split"] = "val"
    trials = load_spec(write_spec(tmp_path, tree)).expand()
    assert {t.config.train.eval_split for t in trials} == {"val"}
    # train/* metrics are measured on no evaluation split: no refusal
    tree = minimal(search={"params": params, "metric": "train/loss", "mode": "min"})
    assert len(load_spec(write_spec(tmp_path, tree)).expand()) == 2


def test_ohem_hpo_selects_on_the_val_split():
    spec = load_spec(SPACES / "ohem_hpo.yaml")
    assert spec.search is not None and not spec.search.allow_test_selection
    assert spec.search.metric == spec.scheduler.metric == tk.VAL_MAP
    (local,) = spec.expand()
    assert local.config.dataset.format == "synthetic"
    assert local.config.train.eval_split == "val"
    (paper,) = spec.expand(profile="paper")
    ds = paper.config.dataset
    assert (ds.format, ds.train_split, ds.val_split, ds.test_split) == (
        "voc",
        "train",
        "val",
        "test",
    )
    assert paper.config.train.eval_split == "val"


def test_claims_directions_and_units(tmp_path):
    claims = [
        claim(),
        claim(label="loss", metric="final/loss_per_roi_all"),
        claim(label="ap", metric="final/AP/cat", expect="none", margin=0.5),
        claim(label="custom", metric="train/fg_fraction", higher_is_better=False),
        claim(label="sized", margin=1.0, paper_delta=2.4),  # better with a smallest effect
    ]
    spec = load_spec(write_spec(tmp_path, minimal(claims=claims)))
    got = [(c.label, c.higher_better, c.scale, c.metric) for c in spec.claims]
    assert got == [
        ("c", True, 100.0, "final/mAP"),  # the default: mAP, in points
        ("loss", False, 1.0, "final/loss_per_roi_all"),
        ("ap", True, 100.0, "final/AP/cat"),
        ("custom", False, 1.0, "train/fg_fraction"),
        ("sized", True, 100.0, "final/mAP"),
    ]
    assert len(spec.expand()) == 2  # claims add no trials


@pytest.mark.parametrize("name", ["paper_ablation.yaml", "paper_multiscale_bbox.yaml"])
def test_shipped_claims_paper_deltas_are_the_rows_differences(name):
    """Every mAP claim's paper_delta is the difference of its two rows' paper numbers."""
    spec = load_spec(SPACES / name)
    assert spec.claims
    paper = {v.name: v.paper for v in spec.variants}
    for c in spec.claims:
        if c.metric == tk.FINAL_MAP:
            expected = paper[c.variant] - paper[c.baseline]
            assert c.paper_delta == pytest.approx(expected, abs=0.05), c.label
            if c.expect == "none":
                assert abs(c.paper_delta) <= c.margin, c.label
            else:
                assert (c.paper_delta > 0) == (c.expect == "better"), c.label
                # the smallest effect that counts: the none claims' margin, wherever the paper's
                # effect exceeds it (a margin on a smaller effect could contradict the paper itself)
                assert c.margin == (1.0 if abs(c.paper_delta) > 1.0 else None), c.label
        else:
            assert c.paper_delta is None  # the poster shows the loss as a figure only


def test_paper_ablation_claims_cover_table1_discussion():
    spec = load_spec(SPACES / "paper_ablation.yaml")
    pairs = {(c.variant, c.baseline, c.metric): c.expect for c in spec.claims}
    loss = tk.FINAL_LOSS_PER_ROI_ALL
    for trunk in ("vggm", "vgg16"):
        assert pairs[(f"ohem_{trunk}", f"frcn_{trunk}", tk.FINAL_MAP)] == "better"
        assert pairs[(f"allrois_{trunk}_n2", f"frcn_{trunk}", tk.FINAL_MAP)] == "better"
        assert pairs[(f"allrois_{trunk}_n2", f"ohem_{trunk}", tk.FINAL_MAP)] == "worse"
        assert pairs[(f"ohem_{trunk}", f"frcn_{trunk}", loss)] == "better"  # lower loss
        assert pairs[(f"ohem_{trunk}", f"allrois_{trunk}_n2", loss)] == "better"
    assert pairs[("frcn_bglo0_vggm", "frcn_vggm", tk.FINAL_MAP)] == "worse"
    assert pairs[("frcn_bglo0_vgg16", "frcn_vgg16", tk.FINAL_MAP)] == "none"
    assert pairs[("frcn_n1_vgg16", "frcn_vgg16", tk.FINAL_MAP)] == "worse"
    assert pairs[("ohem_vgg16_n1", "ohem_vgg16", tk.FINAL_MAP)] == "none"
