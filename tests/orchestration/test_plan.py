"""make_plan's storage: a cloud URI reaches Ray Tune untouched, a filesystem path is made
absolute; --only / --resources selection (no Ray, no MLflow server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ohem_tune.errors import ConfigError
from ohem_tune.orchestration.plan import is_uri, make_plan, parse_resources, resolve_storage

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


@pytest.mark.parametrize(
    "uri", ["s3://bucket/ray_results", "gs://bucket/a/b/", "abfs://container@acct/x", "S3://b/p"]
)
def test_cloud_uris_pass_through_to_tune_untouched(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = make_plan(SMOKE, tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_path=uri)
    assert plan.storage == uri
    assert plan.tune_storage == uri.rstrip("/") + "/smoke/default/tune"
    # the manifest and trial folders stay local: ./ray_results/<experiment>/<profile>
    assert plan.exp_dir == tmp_path / "ray_results" / "smoke" / "default"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("results", "{cwd}/results"),
        ("./a/../results", "{cwd}/results"),
        ("file://{cwd}/results", "{cwd}/results"),
        ("run:v2", "{cwd}/run:v2"),  # a colon in a file name is not a scheme
        (None, "{cwd}/ray_results"),
    ],
)
def test_filesystem_paths_are_made_absolute(given, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cwd = str(tmp_path.resolve())
    storage = resolve_storage(given.format(cwd=cwd) if given else None)
    assert storage == expected.format(cwd=cwd)
    assert not is_uri(storage)
    plan = make_plan(SMOKE, tracking_uri=f"sqlite:///{tmp_path}/m.db", storage_path=given and
                     given.format(cwd=cwd))  # fmt: skip
    assert plan.tune_storage == str(Path(storage) / "smoke" / "default" / "tune")
    assert plan.exp_dir == Path(storage) / "smoke" / "default"


def test_the_cli_keeps_a_uri_whole(tmp_path):
    """typer used to parse --storage-path as a Path, which folds s3://b into s3:/b."""
    cli = str(Path(sys.executable).parent / "ohem-tune")
    out = subprocess.run(
        [cli, "run", str(SMOKE), "--dry-run", "--storage-path", "s3://bucket/results"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"COLUMNS": "300", "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Tune's in s3://bucket/results/smoke/default/tune" in " ".join(out.stdout.split())
    assert not (tmp_path / "s3:").exists()


def test_resources_override_is_validated():
    assert parse_resources(["cpu=2,gpu=0.5"], "s.yaml") == {"cpu": 2.0, "gpu": 0.5}
    with pytest.raises(ConfigError, match="expected cpu=N or gpu=N"):
        parse_resources(["tpu=1"], "s.yaml")
    with pytest.raises(ConfigError, match="'x' is not a number"):
        parse_resources(["cpu=x"], "s.yaml")


def test_a_trial_configs_dataset_root_keeps_its_symlink(tmp_path):
    # dataset.root's proposal files (../../selective_search_data/...) are relative to the root
    # as given; resolving data/VOCdevkit's link would move them under the link's target
    from ohem_tune.orchestration.plan import absolute_paths

    (tmp_path / "disk" / "VOCdevkit").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "VOCdevkit").symlink_to(tmp_path / "disk" / "VOCdevkit")
    tree = absolute_paths({"dataset": {"root": "data/VOCdevkit/VOC2007"},
                           "model": {"weights": "./data/../data/vgg16.pth"}}, tmp_path)  # fmt: skip
    assert tree["dataset"]["root"] == str(tmp_path / "data" / "VOCdevkit" / "VOC2007")
    assert tree["model"]["weights"] == str(tmp_path / "data" / "vgg16.pth")


def test_slots_count_nodes_an_autoscaler_may_start(monkeypatch):
    # a cluster scaled to zero GPU workers: a trial waits for the autoscaler when one of its
    # node types can hold it, and is refused when none can (Tune would wait for ever)
    from ohem_tune.errors import ConfigError
    from ohem_tune.orchestration import cluster
    from ohem_tune.spec.schema import ResourcesSpec

    monkeypatch.setattr(cluster, "live_nodes", lambda: [{"Resources": {"CPU": 2.0}}])
    monkeypatch.setattr(cluster, "autoscaler_node_types", lambda: [{"CPU": 8.0, "GPU": 1.0}])
    assert cluster.cluster_slots(ResourcesSpec(cpu=4, gpu=1)) == 1
    assert cluster.cluster_slots(ResourcesSpec(cpu=4, gpu=0.5)) == 2
    with pytest.raises(ConfigError, match="no trial could start"):
        cluster.cluster_slots(ResourcesSpec(cpu=16, gpu=1))  # bigger than any one node type
    monkeypatch.setattr(cluster, "autoscaler_node_types", lambda: [])
    with pytest.raises(ConfigError, match="at most 2 CPUs and 0 GPUs"):
        cluster.cluster_slots(ResourcesSpec(cpu=4, gpu=1), "the Ray cluster at h:6379")
    assert cluster.cluster_slots(ResourcesSpec(cpu=1, gpu=0)) == 2
