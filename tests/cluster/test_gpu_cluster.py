"""cluster/gpu_cluster.yaml as the Ray cluster launcher reads it: its schema check passes, every
node installs and uses Python 3.11, only the project is synced, the data link cannot land
inside a copied data/, token auth is set up one way, and MLflow is backed by PostgreSQL."""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_FILE = ROOT / "cluster" / "gpu_cluster.yaml"
VENV_BIN = "~/venv/bin/"
COMMAND_PREFIXES = {"nohup", "exec", "env", "{", "}", "!"}  # words before the program
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
BARE_PYTHON = re.compile(r"^(python[0-9.]*|pip[0-9.]*)$")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_FILE.read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict:
    """The config as `ray up` builds it: AWS defaults filled in, setup_commands merged into each
    node type's head_/worker_setup_commands."""
    return prepare_config(copy.deepcopy(raw))


def command_words(command: str) -> list[list[str]]:
    """The simple commands of a shell line, each as its words without env assignments,
    wrappers (nohup) and redirections, so that the first word is the program that runs."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = []
    current: list[str] = []
    skip_next = False
    for token in lexer:
        if skip_next:  # a redirection's target
            skip_next = False
        elif set(token) <= set("&|;()"):  # an operator ends the simple command
            if current:
                out.append(current)
            current = []
        elif set(token) <= set("<>&"):
            skip_next = True
        elif not current and (token in COMMAND_PREFIXES or ASSIGNMENT.match(token)):
            continue
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


def after(words: list[str], flag: str) -> str | None:
    """The word after `flag`, or None."""
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def node_commands(prepared: dict, role: str) -> list[str]:
    return prepared[f"{role}_setup_commands"] + prepared[f"{role}_start_ray_commands"]


def test_the_launchers_schema_check_passes(raw, prepared):
    validate_config(prepared)  # what `ray up` runs before it starts any node
    broken = {**copy.deepcopy(raw), "setup_command": ["echo typo"]}
    with pytest.raises(jsonschema.ValidationError):  # the check does reject a bad file
        validate_config(prepare_config(broken))
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] == 1


def test_every_command_is_valid_bash(prepared):
    for role in ("head", "worker"):
        for command in node_commands(prepared, role):
            out = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert out.returncode == 0, f"{role}: {command}: {out.stderr}"


@pytest.mark.parametrize("role", ["head", "worker"])
def test_every_node_installs_python_3_11_and_runs_only_from_its_venv(prepared, role):
    commands = node_commands(prepared, role)
    simple = [words for line in commands for words in command_words(line)]
    programs = [words[0] for words in simple]
    bare = [p for p in programs if BARE_PYTHON.match(p)]
    assert not bare, f"{role}: bare interpreters {bare} (the image's python3 is 3.10)"
    for prog in programs:  # python, pip, ray, mlflow all come from the 3.11 venv
        name = prog.rsplit("/", 1)[-1]
        if name in {"python", "ray", "mlflow", "ohem-tune"}:
            assert prog.startswith(VENV_BIN), f"{role}: {prog} is not the venv's"

    def index(predicate) -> int:
        found = [i for i, words in enumerate(simple) if predicate(words)]
        assert found, f"{role}: no such command"
        return found[0]

    installs = index(lambda w: w[1:4] == ["python", "install", "3.11"])
    venv = index(lambda w: w[1:2] == ["venv"] and after(w, "--python") == "3.11")
    guard = index(lambda w: w[0] == VENV_BIN + "python" and "(3, 11)" in " ".join(w))
    project = index(
        lambda w: (
            w[1:3] == ["pip", "install"]
            and after(w, "--python") == VENV_BIN + "python"
            and after(w, "-e") == "~/ohem-tune"
        )
    )
    assert installs < venv < guard < project
    assert simple[venv][-1] == VENV_BIN.removesuffix("/bin/")


# --------------------------------------------------------------------------- what is synced
def rsync_patterns(prepared: dict) -> list[str]:
    """The exclude patterns of the rsync arguments Ray builds from rsync_exclude and
    rsync_filter (each filter file is a dir-merge of excludes; only the root's exists here)."""
    options = {key: prepared[key] for key in ("rsync_exclude", "rsync_filter")}
    args = SSHCommandRunner._create_rsync_filter_args(None, options)
    patterns = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "--exclude":
            patterns.append(value)
        else:
            assert flag == "--filter" and value.startswith("dir-merge,- "), (flag, value)
            merged = (ROOT / value.removeprefix("dir-merge,- ")).read_text().splitlines()
            patterns += [p.strip() for p in merged if p.strip() and not p.startswith("#")]
    return patterns


def excluded(path: str, is_dir: bool, patterns: list[str]) -> bool:
    """rsync's rule for these patterns: a leading '/' anchors at the transfer root, a trailing
    '/' matches directories only, a pattern without '/' matches a name at any depth, a pattern
    with one matches the path's tail; an excluded directory takes its contents with it."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        head, head_is_dir = parts[:depth], is_dir or depth < len(parts)
        for pattern in patterns:
            if pattern.endswith("/") and not head_is_dir:
                continue
            pat = pattern.rstrip("/").lstrip("/").split("/")
            if pattern.startswith("/") and len(pat) != len(head):
                continue
            if len(pat) <= len(head) and all(map(fnmatchcase, head[-len(pat) :], pat)):
                return True
    return False


def test_only_the_project_is_synced(prepared):
    assert prepared["file_mounts"] == {"~/ohem-tune": "."}
    patterns = rsync_patterns(prepared)
    for heavy in [".venv", "data", "mlruns", "ray_results", "outputs", ".ohem_cache", "datasets"]:
        assert excluded(heavy, True, patterns), heavy
    assert excluded("data", False, patterns)  # the head's data symlink is not passed on either
    assert excluded("mlflow.db", False, patterns)
    assert excluded("ohem_tune/__pycache__/x.pyc", False, patterns)
    project = [*ROOT.glob("ohem_tune/**/*.py"), *ROOT.glob("tests/**/*.py"),
               *ROOT.glob("configs/*.yaml"), *ROOT.glob("search_spaces/*.yaml"),
               ROOT / "pyproject.toml", ROOT / ".git" / "HEAD"]  # fmt: skip
    project = [p.relative_to(ROOT).as_posix() for p in project if "__pycache__" not in p.parts]
    assert "ohem_tune/data/loader.py" in project
    dropped = [p for p in project if excluded(p, False, patterns)]
    assert not dropped, f"rsync would leave out project files: {dropped[:5]}"


def test_rsync_rules_model_is_what_rsync_does():
    """The matcher above on the cases rsync was checked against by hand (rsync 3.2)."""
    rules = ["/data", "/mlruns", "*.db", "__pycache__/"]
    assert excluded("data/VOCdevkit/x.jpg", False, rules)
    assert not excluded("ohem_tune/data/loader.py", False, rules)
    assert not excluded("sub/mlruns", True, rules)
    assert excluded("sub/m.db", False, rules)
    assert not excluded("__pycache__", False, rules)  # a file of that name is not a directory


# --------------------------------------------------------------------------- data link, auth
def data_link_commands(prepared: dict, shared: Path) -> str:
    lines = [c for c in prepared["worker_setup_commands"] if "~/ohem-tune/data" in c]
    assert len(lines) == 2, lines  # the guard and the link
    return " && ".join(f"({c})" for c in lines).replace("/mnt/shared", str(shared))


def test_the_data_link_never_lands_inside_a_copied_data_dir(prepared, tmp_path):
    script = data_link_commands(prepared, tmp_path / "shared")
    home = tmp_path / "home"
    checkout = home / "ohem-tune"
    checkout.mkdir(parents=True)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # setup commands re-run on every `ray up`
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert (checkout / "data").is_symlink()
        assert (checkout / "data").resolve() == (tmp_path / "shared" / "data").resolve()
    assert not (tmp_path / "shared" / "data" / "data").exists()

    (checkout / "data").unlink()
    (checkout / "data").mkdir()  # e.g. an unfiltered copy brought a real data/
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "is a directory" in out.stderr
    assert list((checkout / "data").iterdir()) == []


def test_token_auth_one_way_on_every_node(prepared):
    for role in ("head", "worker"):
        setup = " ".join(prepared[f"{role}_setup_commands"])
        assert "install -D -m 600 /mnt/shared/.ray/auth_token ~/.ray/auth_token" in setup, role
        starts = [c for c in prepared[f"{role}_start_ray_commands"] if " start " in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), role
    head = " ".join(prepared["head_setup_commands"])
    assert "openssl rand -hex 32 > /mnt/shared/.ray/auth_token" in head
    assert "RAY_AUTH_TOKEN" not in CLUSTER_FILE.read_text()


def test_mlflow_is_backed_by_postgres_on_the_head(prepared):
    servers = [
        words
        for line in prepared["head_start_ray_commands"]
        for words in command_words(line)
        if words[0] == VENV_BIN + "mlflow"
    ]
    assert len(servers) == 1
    uri = after(servers[0], "--backend-store-uri")
    assert uri is not None and uri.startswith("postgresql://") and "@127.0.0.1:" in uri
    assert ":" not in uri.removeprefix("postgresql://").split("@")[0]  # password in ~/.pgpass
    every = prepared["head_setup_commands"] + prepared["head_start_ray_commands"]
    assert not any("sqlite" in c for c in every)
    assert any("apt-get install -y postgresql" in c for c in prepared["head_setup_commands"])
