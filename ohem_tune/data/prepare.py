"""Lay out the paper's inputs where the `paper` profile reads them, from their official releases.

`prepare_voc07` takes the official archives (PASCAL VOC 2007, fast-rcnn's selective-search
proposals and ImageNet models) and weight files, verifies each archive's published checksum,
extracts it safely (no member may leave its directory; temp dir, then rename) and skips what is
already in place. It converts nothing: fast-rcnn's `.caffemodel` files are reported as needing
conversion. `check_voc07_tree` says what is present and what is missing (with the fix); a
`doctor` command reuses it. Sources and checksums: docs/data.md, "Getting the paper's inputs".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ohem_tune.errors import DataError

log = logging.getLogger(__name__)

Echo = Callable[[str], None]

# Where the `paper` profile (search_spaces/paper_ablation.yaml) reads each input, relative to the
# data dir (`data/` under the working directory by default).
DEVKIT = Path("VOCdevkit/VOC2007")
SPLITS = ("trainval", "test", "train", "val")
PROPOSALS = {
    "trainval": Path("selective_search_data/voc_2007_trainval.mat"),
    "test": Path("selective_search_data/voc_2007_test.mat"),
}
WEIGHTS = {
    "vgg16": Path("imagenet_models/vgg16.pth"),
    "vgg_cnn_m_1024": Path("imagenet_models/vgg_cnn_m_1024.pth"),
}
CAFFE_MODELS = {  # what fast-rcnn's imagenet_models.tgz holds, per trunk
    "vgg16": Path("imagenet_models/VGG16.v2.caffemodel"),
    "vgg_cnn_m_1024": Path("imagenet_models/VGG_CNN_M_1024.v2.caffemodel"),
}
MARKERS = Path(".ohem-prepare")  # <data>/.ohem-prepare/<archive>.json: what was extracted
DOWNLOADS = Path("downloads")  # <data>/downloads/: where --download saves the archives
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Archive:
    """One official archive: where it comes from, its published MD5, what it extracts to."""

    name: str
    url: str
    md5: str | None  # None: no published checksum is known
    prefix: str  # every member must lie under this directory
    products: tuple[str, ...]  # files (relative to the data dir) it must provide
    what: str
    download: bool = True  # fetched by --download when its products are missing


@dataclass(frozen=True)
class WeightFile:
    """A weights file accepted under this name in --from, and where it is placed."""

    name: str
    target: Path
    what: str
    url: str | None = None
    sha256_prefix: str | None = None  # torchvision names each file by its hash's first digits


# Checksums: torchvision torchvision/datasets/voc.py (DATASET_YEAR_DICT) for the VOC tars;
# rbgirshick/fast-rcnn data/scripts/fetch_{selective_search_data,imagenet_models}.sh for the rest.
# Tests monkeypatch these tables (archives they build have other bytes).
ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive(
            "VOCtrainval_06-Nov-2007.tar",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
            "c52e279531787c972589f7e41ab4ae64",
            "VOCdevkit",
            (f"{DEVKIT}/ImageSets/Main/trainval.txt",),
            "VOC 2007 trainval images and annotations",
        ),
        Archive(
            "VOCtest_06-Nov-2007.tar",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
            "b6e924de25625d8de591ea690078ad9f",
            "VOCdevkit",
            (f"{DEVKIT}/ImageSets/Main/test.txt",),
            "VOC 2007 test images and annotations",
        ),
        Archive(
            "VOCdevkit_08-Jun-2007.tar",
            "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCdevkit_08-Jun-2007.tar",
            None,
            "VOCdevkit",
            (),
            "VOC 2007 development kit (MATLAB code and docs; ohem-tune does not need it)",
            download=False,
        ),
        Archive(
            "selective_search_data.tgz",
            "https://dl.dropboxusercontent.com/s/orrt7o6bp6ae0tc/selective_search_data.tgz",
            "7078c1db87a7851b31966b96774cd9b9",
            "selective_search_data",
            tuple(str(p) for p in PROPOSALS.values()),
            "fast-rcnn's precomputed selective-search proposals",
        ),
        Archive(
            "imagenet_models.tgz",
            "https://dl.dropboxusercontent.com/s/riazjuizq0w7dqm/imagenet_models.tgz",
            "8b1d4b9da0593fc70ef403284f810adc",
            "imagenet_models",
            tuple(str(p) for p in CAFFE_MODELS.values()),
            "fast-rcnn's ImageNet models (Caffe .caffemodel: need converting)",
        ),
    )
}

WEIGHT_FILES: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            "vgg16-397923af.pth",
            WEIGHTS["vgg16"],
            "torchvision's ImageNet VGG16 (torchvision format)",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af",
        ),
        WeightFile("vgg16.pth", WEIGHTS["vgg16"], "a VGG16 state dict you converted"),
        WeightFile(
            "vgg_cnn_m_1024.pth",
            WEIGHTS["vgg_cnn_m_1024"],
            "a VGG_CNN_M_1024 state dict converted from fast-rcnn's Caffe model",
        ),
    )
}

LOOSE_PROPOSALS = {p.name: p for p in PROPOSALS.values()}  # already-extracted .mat files

CONVERT_HELP = {
    "vgg_cnn_m_1024": (
        "convert {src} to a PyTorch state dict and torch.save it as {dst}: keys conv1..conv5 and "
        "fc6, fc7 with '.weight' / '.bias', tensors in the Caffe blob shapes (conv1 kept in "
        "Caffe's BGR channel order; model.weights_format caffe is vgg_cnn_m_1024's default); "
        "the names ohem_tune/modeling/weights.py maps"
    ),
    "vgg16": (
        "convert {src} to a PyTorch state dict with its Caffe blob names (conv1_1 ... conv5_3, "
        "fc6, fc7 with '.weight' / '.bias', conv1 kept in Caffe's BGR order: names the loader "
        "checks against model.weights_format) and torch.save it as {dst}, then set "
        "model.weights_format=caffe (vgg16's default is torchvision); jcjohnson/pytorch-vgg's "
        "vgg16-00b39a1b.pth is that model converted already; or pass torchvision's "
        "vgg16-397923af.pth instead"
    ),
}


@dataclass(frozen=True)
class Finding:
    """One input of the paper profile: present or not, where, and how to fix it if not."""

    item: str
    ok: bool
    path: Path
    detail: str
    fix: str = ""
    required: bool = True


@dataclass
class PrepareReport:
    """What `prepare_voc07` did (one line per input) and the check of the resulting tree."""

    actions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if f.required and not f.ok]


# ------------------------------------------------------------------------------ the check


def check_voc07_tree(data_dir: Path | str = "data") -> list[Finding]:
    """Check the paper profile's inputs under data_dir: devkit splits, every listed id's XML and
    JPEG, both proposal files, both trunks' weights. Reads directory listings only (fast)."""
    data = Path(data_dir)
    devkit = data / DEVKIT
    trainval_fix = _pass("VOCtrainval_06-Nov-2007.tar")
    test_fix = _pass("VOCtest_06-Nov-2007.tar")
    findings: list[Finding] = []
    if not devkit.is_dir():
        findings.append(
            Finding(
                "VOC2007 devkit",
                False,
                devkit,
                "not found",
                _pass("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"),
            )  # fmt: skip
        )
    else:
        xmls = _stems(devkit / "Annotations", ".xml")
        jpgs = _stems(devkit / "JPEGImages", ".jpg")
        for split in SPLITS:
            fix = test_fix if split == "test" else trainval_fix
            path = devkit / "ImageSets" / "Main" / f"{split}.txt"
            if not path.is_file():
                findings.append(Finding(f"split {split}", False, path, "not found", fix))
                continue
            ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            no_xml = [i for i in ids if i not in xmls]
            no_jpg = [i for i in ids if i not in jpgs]
            if not ids:
                findings.append(Finding(f"split {split}", False, path, "lists no image", fix))
            elif no_xml or no_jpg:
                gaps = ((no_xml, "Annotations/<id>.xml"), (no_jpg, "JPEGImages/<id>.jpg"))
                parts = [
                    f"{len(bad)} of {len(ids)} ids without {kind} (e.g. {', '.join(bad[:3])})"
                    for bad, kind in gaps
                    if bad
                ]
                findings.append(
                    Finding(
                        f"split {split}", False, path, "; ".join(parts), f"incomplete copy? {fix}"
                    )
                )
            else:
                findings.append(
                    Finding(
                        f"split {split}",
                        True,
                        path,
                        f"{len(ids)} image{'s' * (len(ids) != 1)}, each with XML + JPEG",
                    )
                )
    for split, rel in PROPOSALS.items():
        path = data / rel
        ok = path.is_file() and path.stat().st_size > 0
        findings.append(
            Finding(
                f"proposals {split}", ok, path,
                f"{path.stat().st_size / 2**20:.1f} MiB" if ok else "not found",
                "" if ok else _pass("selective_search_data.tgz"),
            )
        )  # fmt: skip
    for trunk, rel in WEIGHTS.items():
        path = data / rel
        if path.is_file() and path.stat().st_size > 0:
            findings.append(
                Finding(f"weights {trunk}", True, path, f"{path.stat().st_size / 2**20:.1f} MiB")
            )
            continue
        caffe = data / CAFFE_MODELS[trunk]
        if caffe.is_file():
            fix = CONVERT_HELP[trunk].format(src=caffe, dst=path)
            detail = f"not found; {caffe.name} is there but is a Caffe model (not converted)"
        elif trunk == "vgg16":
            fix = (
                f"pass vgg16-397923af.pth ({WEIGHT_FILES['vgg16-397923af.pth'].url}, torchvision "
                "format) or a VGG16 you converted named vgg16.pth to --from; or "
                f"{_pass('imagenet_models.tgz')} and convert its VGG16.v2.caffemodel"
            )
            detail = "not found"
        else:
            fix = (
                f"{_pass('imagenet_models.tgz')} and convert its VGG_CNN_M_1024.v2.caffemodel, "
                "or pass a converted vgg_cnn_m_1024.pth"
            )
            detail = "not found"
        findings.append(Finding(f"weights {trunk}", False, path, detail, fix))
    return findings


def _stems(folder: Path, suffix: str) -> set[str]:
    if not folder.is_dir():
        return set()
    return {name[: -len(suffix)] for name in os.listdir(folder) if name.endswith(suffix)}


def _pass(*names: str) -> str:
    """The fix for missing archives: `pass NAME (URL) and ... to ... --from` (reads ARCHIVES)."""
    listed = " and ".join(f"{name} ({ARCHIVES[name].url})" for name in names)
    return f"pass {listed} to `ohem-tune data prepare voc07 --from`"


# ------------------------------------------------------------------------------ preparing


def prepare_voc07(
    sources: Sequence[Path | str] = (),
    data_dir: Path | str = "data",
    *,
    verify: bool = True,
    download: bool = False,
    echo: Echo | None = None,
) -> PrepareReport:
    """Extract / copy every recognised input of `sources` (files, or directories holding them)
    into data_dir, downloading what is missing with `download`; then check the tree."""
    data = Path(data_dir)
    report = PrepareReport()
    say = echo or log.info

    def act(line: str) -> None:
        report.actions.append(line)
        say(line)

    def warn(line: str) -> None:
        report.warnings.append(line)
        say(f"WARNING: {line}")

    inputs = collect_inputs(sources, act)
    if inputs or download:
        data.mkdir(parents=True, exist_ok=True)
    if not verify:
        warn("--no-verify: checksums are NOT checked; only for archives you built yourself")
    if download:
        _download_missing(inputs, data, act)
    for name, path in inputs.items():
        if name in ARCHIVES:
            _extract_archive(path, ARCHIVES[name], data, verify, act, warn)
        elif name in WEIGHT_FILES:
            _place_weights(path, WEIGHT_FILES[name], data, verify, act, warn)
        elif name in LOOSE_PROPOSALS:
            warn(f"{path}: a loose proposal file has no published checksum; copied unverified")
            _copy(path, data / LOOSE_PROPOSALS[name], act)
        elif name.endswith(".caffemodel"):
            _copy(path, data / "imagenet_models" / name, act)
    for trunk, caffe in CAFFE_MODELS.items():
        if (data / caffe).is_file() and not (data / WEIGHTS[trunk]).is_file():
            warn(
                f"{data / caffe} is a Caffe model that ohem-tune cannot read and does not convert: "
                + CONVERT_HELP[trunk].format(src=data / caffe, dst=data / WEIGHTS[trunk])
            )
    report.findings = check_voc07_tree(data)
    return report


def collect_inputs(sources: Sequence[Path | str], act: Echo | None = None) -> dict[str, Path]:
    """{recognised file name: path} from files and directories (non-recursive)."""
    known = set(ARCHIVES) | set(WEIGHT_FILES) | set(LOOSE_PROPOSALS)
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        if name in found and found[name].resolve() != path.resolve():
            raise DataError(
                f"--from: {name} given twice ({found[name]} and {path}); pass only one of them"
            )
        found[name] = path

    for source in map(Path, sources):
        if source.is_dir():
            ignored = 0
            for child in sorted(source.iterdir()):
                if child.is_file() and (child.name in known or child.suffix == ".caffemodel"):
                    add(child.name, child)
                else:
                    ignored += 1
            if ignored and act:
                act(f"{source}: ignored {ignored} entries that are none of the known inputs")
        elif source.is_file():
            if source.name not in known and source.suffix != ".caffemodel":
                raise DataError(
                    f"--from {source}: not one of the known inputs ({', '.join(sorted(known))}, "
                    "*.caffemodel); keep the official file names"
                )
            add(source.name, source)
        else:
            raise DataError(f"--from {source}: no such file or directory")
    return found


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract_archive(path: Path, spec: Archive, data: Path, verify: bool, act: Echo, warn: Echo):
    """Verify, then extract into a temp dir under data and move into place; skip if done."""
    marker_path = data / MARKERS / f"{spec.name}.json"
    marker = _read_marker(marker_path)
    stat = path.stat()
    products_ok = all((data / p).is_file() for p in spec.products)
    if (
        marker is not None and products_ok
        and (marker.get("size"), marker.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
        and ((marker.get("verified") and marker.get("md5") == spec.md5) or not verify)
    ):  # fmt: skip
        act(f"{spec.name}: already extracted from this file ({_verified_word(marker)}); skipped")
        return
    act(f"{spec.name}: checking MD5 of {path} ...")
    md5 = file_digest(path, "md5")
    verified = False
    if not verify:
        warn(f"{path}: checksum NOT verified (--no-verify); its MD5 is {md5}")
    elif spec.md5 is None:
        warn(
            f"{path}: no published checksum known for {spec.name}; extracted unverified (MD5 {md5})"
        )
    elif md5 != spec.md5:
        raise DataError(
            f"{path}: MD5 {md5} does not match the official {spec.name} (expected {spec.md5}); "
            f"re-download it from {spec.url} (an archive you built yourself: --no-verify)"
        )
    else:
        verified = True
    if marker is not None and marker.get("md5") == md5 and products_ok:
        act(f"{spec.name}: already extracted (same MD5); skipped")
    else:
        act(f"{spec.name}: extracting into {data} ...")
        count = _safe_extract(path, spec, data)
        missing = [p for p in spec.products if not (data / p).is_file()]
        if missing:
            raise DataError(
                f"{path}: extracted, but it lacks {', '.join(missing)}; not the official "
                f"{spec.name} ({spec.url})"
            )
        act(f"{spec.name}: extracted {count} files")
    marker_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"md5": md5, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "source": str(path)}
    marker_path.write_text(json.dumps({**record, "verified": verified}) + "\n")


def _verified_word(marker: dict) -> str:
    return "checksum verified" if marker.get("verified") else "checksum NOT verified"


def _read_marker(path: Path) -> dict | None:
    try:
        marker = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def _safe_extract(path: Path, spec: Archive, data: Path) -> int:
    """Extract every member after checking them all: regular files and directories only, each
    under spec.prefix, no absolute path and no '..'. Returns the number of files."""
    try:
        tar = tarfile.open(path)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc}); re-download it") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(
                f"{path}: truncated or corrupt archive ({exc}); re-download it"
            ) from None
        keep = []
        for member in members:
            name = PurePosixPath(member.name)
            parts = [p for p in name.parts if p != "."]
            if not parts and member.isdir():
                continue  # the archive's own "./" entry
            problem = None
            if name.is_absolute() or ".." in parts:
                problem = "leaves the target directory"
            elif not (member.isfile() or member.isdir()):
                problem = "is a link or special file"
            elif parts[0] != spec.prefix:
                problem = f"is outside {spec.prefix}/ (the official layout)"
            if problem:
                raise DataError(
                    f"{path}: refusing to extract: member {member.name!r} {problem}; "
                    f"use the official {spec.name} ({spec.url})"
                )
            keep.append(member)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=data))
        try:
            tar.extractall(tmp, members=keep, filter="data")
            _merge_move(tmp, data)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return sum(m.isfile() for m in keep)


def _merge_move(src: Path, dst: Path) -> None:
    """Move src's tree into dst: whole directories where dst has none, else file by file (each
    os.replace is atomic, so no half-written file is ever in place)."""
    for child in src.iterdir():
        target = dst / child.name
        if child.is_dir():
            if target.is_dir():
                _merge_move(child, target)
            elif target.exists():
                raise DataError(f"{target}: a file is in the way of a directory of the archive")
            else:
                os.replace(child, target)
        else:
            if target.is_dir():
                raise DataError(f"{target}: a directory is in the way of a file of the archive")
            os.replace(child, target)


def _place_weights(path: Path, spec: WeightFile, data: Path, verify: bool, act: Echo, warn: Echo):
    """Verify torchvision's hash prefix (user-converted files have none) and copy into place."""
    target = data / spec.target
    if spec.sha256_prefix is not None:
        if verify:
            sha = file_digest(path, "sha256")
            if not sha.startswith(spec.sha256_prefix):
                raise DataError(
                    f"{path}: SHA-256 {sha[:16]}... does not start with {spec.sha256_prefix} "
                    f"(torchvision names each file by its hash); re-download it from {spec.url}"
                )
        else:
            warn(f"{path}: SHA-256 NOT verified (--no-verify)")
    else:
        warn(f"{path}: {spec.what}: no published checksum; placed unverified")
    _copy(path, target, act, spec.what)


def _copy(path: Path, target: Path, act: Echo, what: str = "") -> None:
    """Copy path to target via a temp file and a rename; skip an identical target, refuse to
    overwrite a different one."""
    if target.exists():
        same = target.stat().st_size == path.stat().st_size and file_digest(
            target, "sha256"
        ) == file_digest(path, "sha256")
        if same:
            act(f"{target}: already in place (identical to {path}); skipped")
            return
        raise DataError(
            f"{target}: already exists and differs from {path}; remove it to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    shutil.copyfile(path, tmp)
    os.replace(tmp, target)
    act(f"{target}: copied from {path}" + (f" ({what})" if what else ""))


def _download_missing(inputs: dict[str, Path], data: Path, act: Echo) -> None:
    """Fetch each official archive (and torchvision's VGG16) whose products are missing and
    that --from did not give; adds them to `inputs`."""
    wanted: list[tuple[str, str]] = []
    for name, archive in ARCHIVES.items():
        done = archive.products and all((data / p).is_file() for p in archive.products)
        if archive.download and name not in inputs and not done:
            if name == "imagenet_models.tgz" and (data / WEIGHTS["vgg_cnn_m_1024"]).is_file():
                continue
            wanted.append((name, archive.url))
    vgg = WEIGHT_FILES["vgg16-397923af.pth"]
    if not (data / vgg.target).is_file() and not any(
        WEIGHT_FILES[n].target == vgg.target for n in inputs if n in WEIGHT_FILES
    ):
        wanted.append((vgg.name, str(vgg.url)))
    for name, url in wanted:
        dest = data / DOWNLOADS / name
        if not dest.is_file():
            act(f"downloading {url} ...")
            download_file(url, dest)
        inputs[name] = dest


def download_file(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream url to dest (via dest.part and a rename); a network failure is a one-line error."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"--download: cannot fetch {url} ({reason}); download it on a machine with internet "
            f"and pass the file (or its directory) with --from"
        ) from None
    os.replace(part, dest)
