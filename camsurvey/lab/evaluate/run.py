"""``run_evaluation``: a whole dataset, shard by shard, in this process or on a Dask cluster, resumable.

A run is described by its :class:`Settings` (data, model, protocol, seed, shard size). It writes
into a results folder:

* ``manifest.json``: the settings, the model's sha256, the package's version, the images read
  and those skipped while reading; written first, atomically;
* ``shards/NNNNN.parquet``: one Parquet file per shard of ``shard_size`` images, each row one
  image and one method (image id, class, target, prediction, method, every metric, seconds),
  plus one row per image skipped while loading (``skipped`` holds its reason). Each file is
  written to a temporary name and renamed when complete, so a shard file is never half a file.

Killing the run at any moment loses at most the shards in flight: the same command again reads
the manifest, checks that the settings are the same (a folder holding another run's results is
refused) and computes only the shards whose file is missing.

Runs where the user is: in this process (default), on a ``dask.distributed`` LocalCluster of N
workers (``cluster="local:N"``), or on an existing cluster (``scheduler="tcp://host:8786"``). Each
worker loads the model once (:func:`worker_model`), uses CUDA when it has it, and computes whole
shards; the shard's rows come back to this process, which writes the file, so the workers need
to read the images but not the results folder. Every image and method is seeded from the run's
seed and the image's id (:func:`image_seed`), never from the worker, so the rows are the same
wherever they are computed, given the same torch thread count per process (``threads``, part of
the settings: torch's CPU kernels round differently with another count).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

import camsurvey

from ...common import check_int
from ...datasets.annotated import AnnotatedDataset, AnnotatedImage, Skipped, UnreadableImage, read_dataset, transformed
from ...files import check_output, write_file
from ...models import load_model
from .protocol import Protocol, protocol

MANIFEST = "manifest.json"
SHARDS = "shards"
DEFAULT_SHARD_SIZE = 64


@dataclass(frozen=True)
class Settings:
    """What a run computes: the same settings, computed with the same torch thread count, give the same rows.

    ``model``: a name of :data:`camsurvey.MODELS`; ``weights``: ``"imagenet"``, ``None`` (seeded
    random) or a state-dict path; ``synsets``: a synset mapping file (see
    :mod:`camsurvey.datasets.annotated`); ``limit``: only the first ``limit`` images.
    """

    data: str
    format: str
    model: str
    protocol: Protocol
    weights: str | None = "imagenet"
    synsets: str | None = None
    seed: int = 0
    shard_size: int = DEFAULT_SHARD_SIZE
    limit: int | None = None

    def as_dict(self) -> dict:
        record = asdict(self)
        record["protocol"] = self.protocol.as_dict()
        record["data"] = str(Path(self.data).resolve())
        if self.weights not in (None, "imagenet"):
            record["weights"] = str(Path(self.weights).resolve())
        return record


def require(module: str):
    """Import an optional dependency of ``camsurvey evaluate``, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"camsurvey evaluate needs {module.split('.')[0]} for this: install the extra with "
                         "`pip install 'camsurvey[scale]'` (make install does)") from None


def image_seed(seed: int, image_id: str, method: str) -> int:
    """The seed of one image and method: from the run's seed and the image's id alone."""
    digest = hashlib.sha256(f"{seed}\0{image_id}\0{method}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def model_sha256(model) -> str:
    """sha256 of the model's parameters and buffers (names, dtypes, shapes, values), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.numpy().tobytes() if value.dtype != torch.bfloat16 else value.float().numpy().tobytes())
    return digest.hexdigest()


def resolve_model(name: str, weights) -> tuple[str, str | None]:
    """``(model name, weights)`` for ``--model NAME|PATH``: a name of ``MODELS``, or a state-dict file
    whose tensors fit a registered architecture exactly (same names and shapes; the first that fits)."""
    from ...models import MODELS

    if name in MODELS:
        return name, weights
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}: give a name from {sorted(MODELS)} or the path of a weights file")
    try:
        state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as error:
        raise ValueError(f"could not read the weights file {path}: {error}") from None
    shapes = {key: tuple(value.shape) for key, value in state.items()} if isinstance(state, dict) else {}
    for candidate in MODELS:
        with torch.device("meta"):  # the architecture alone: no memory, no initialisation
            architecture = MODELS[candidate](weights=None)
        if {key: tuple(value.shape) for key, value in architecture.state_dict().items()} == shapes:
            return candidate, str(path)
    raise ValueError(f"the weights file {path} fits none of the models {sorted(MODELS)}; give --model NAME and "
                     "--weights PATH for an architecture camsurvey knows")


@lru_cache(maxsize=2)
def worker_model(name: str, weights, device: str | None = None):
    """The model, loaded once per process (each Dask worker keeps its own), on CUDA when present."""
    return load_model(name, weights=weights, device=device)


def read_settings_dataset(settings: Settings, classes) -> AnnotatedDataset:
    dataset = read_dataset(settings.data, settings.format, classes, settings.synsets)
    if settings.limit is not None:
        dataset.images = dataset.images[:settings.limit]
    return dataset


def shard_slices(count: int, shard_size: int) -> list[range]:
    """Shard k holds images ``[k * shard_size, (k + 1) * shard_size)`` of the dataset's order."""
    return [range(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def shard_path(folder: Path, index: int) -> Path:
    return Path(folder) / SHARDS / f"{index:05d}.parquet"


# ---------------------------------------------------------------- one shard

@dataclass
class ShardResult:
    """What one shard computed: the rows of :data:`COLUMNS` and its load-time skips."""

    index: int
    rows: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def score_one(model, image: AnnotatedImage, chosen: Protocol, seed: int, transform) -> list[dict]:
    """Every method of ``chosen`` on one image: one row per method."""
    from .scoring import score_image

    pixels, boxes = transformed(image, transform)
    batch = pixels.unsqueeze(0).to(model.device)
    with torch.no_grad():
        predicted = int(model(batch).argmax(dim=1)[0])
    target_index = image.class_index if chosen.target == "label" else predicted
    target = torch.tensor([target_index])
    rows = []
    for method in chosen.methods:
        torch.manual_seed(image_seed(seed, image.image_id, method))
        start = time.perf_counter()
        scores = score_image(model, batch, boxes, target, method, chosen)
        rows.append({"image_id": image.image_id, "label": image.label, "class_index": image.class_index,
                     "target": target_index, "predicted": predicted, "method": method, **scores,
                     "seconds": time.perf_counter() - start})
    return rows


def run_shard(settings: Settings, index: int, images: list[AnnotatedImage], threads: int | None = None,
              on_image: Callable[[], None] | None = None) -> ShardResult:
    """Score the images of shard ``index``; an image that cannot be decoded becomes a skipped record."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = worker_model(settings.model, settings.weights)
    transform = settings.protocol.transform()
    result, start = ShardResult(index), time.perf_counter()
    for image in images:
        try:
            result.rows.extend(score_one(model, image, settings.protocol, settings.seed, transform))
        except UnreadableImage as error:
            result.skipped.append(Skipped(image.image_id, image.path, str(error)))
        if on_image is not None:
            on_image()
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- files

def shard_table(result: ShardResult, settings_hash: str, columns: list[str], has_boxes: bool):
    """The shard as a pyarrow Table: metric columns float64 (null where not computed), skip rows last."""
    pa = require("pyarrow")

    text = {"image_id", "label", "method", "skipped"}
    integer = {"class_index", "target", "predicted", "shard"}
    rows = [{**row, "shard": result.index, "skipped": None} for row in result.rows]
    rows += [{"image_id": s.image_id, "label": None, "class_index": None, "target": None, "predicted": None,
              "method": None, "seconds": None, "shard": result.index, "skipped": s.line()} for s in result.skipped]
    names = [*columns, "shard", "skipped"]
    types = [pa.string() if n in text else pa.int64() if n in integer else pa.float64() for n in names]
    schema = pa.schema(list(zip(names, types)), metadata={"settings_sha256": settings_hash})
    return pa.Table.from_pylist([{n: row.get(n) for n in names} for row in rows], schema=schema)


def row_columns(chosen: Protocol, has_boxes: bool) -> list[str]:
    """The columns of a result row: the localisation metrics only where the data has boxes."""
    metrics = [m for m in chosen.metrics if has_boxes or m not in ("pointing_game", "iou")]
    return ["image_id", "label", "class_index", "target", "predicted", "method", *metrics, "seconds"]


def write_shard(folder: Path, table) -> Path:
    """Write one shard file atomically (a temporary file renamed when complete)."""
    pq = require("pyarrow.parquet")

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    index = int(table.column("shard")[0].as_py()) if table.num_rows else None
    if index is None:
        raise ValueError("a shard file needs at least one row")
    return write_file(shard_path(folder, index), buffer.getvalue(), what="shard file")


def read_rows(folder):
    """Every shard file of a results folder as one pyarrow Table (in shard order)."""
    pa, pq = require("pyarrow"), require("pyarrow.parquet")

    paths = sorted((Path(folder) / SHARDS).glob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{folder} holds no shard files ({SHARDS}/*.parquet); run camsurvey evaluate first")
    return pa.concat_tables([pq.read_table(path) for path in paths])


def settings_digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def load_manifest(folder) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a results folder of camsurvey evaluate")
    return json.loads(path.read_text())


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two settings records (nested keys as ``a.b``)."""
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


def free_folder(folder: Path) -> Path:
    """``folder`` if it holds no manifest yet, else the first of ``folder-1``, ``folder-2``, ... that does not."""
    candidate, number = Path(folder), 0
    while (candidate / MANIFEST).exists():
        number += 1
        candidate = Path(f"{folder}-{number}")
    return candidate


# ---------------------------------------------------------------- the run

@dataclass
class Plan:
    """A run ready to go: its settings record, the dataset, which shards remain, the folder."""

    folder: Path
    settings: Settings
    record: dict
    dataset: AnnotatedDataset
    shards: list[range]
    pending: list[int]
    manifest: dict

    @property
    def columns(self) -> list[str]:
        return row_columns(self.settings.protocol, self.dataset.has_boxes)


def prepare(settings: Settings, folder, *, threads: int, new: bool = False,
            log: Callable[[str], None] = print) -> Plan:
    """Read the dataset, write (or check) the manifest, and list the shards still to compute.

    ``threads``: the torch threads each image is computed with. It is part of the settings: torch's
    CPU kernels round differently with another thread count (the metrics moved by up to 1e-3 on
    the scenes between 1 and 2 threads), so a run is resumed only with the same count.
    """
    check_int(settings.shard_size, "shard_size", hint="images per shard file")
    if settings.limit is not None:
        check_int(settings.limit, "limit", hint="how many images of the dataset to evaluate")
    folder = check_output(folder, inputs=[settings.data], what="results folder")
    if new:
        folder = free_folder(folder)
    model = worker_model(settings.model, settings.weights)
    check_int(threads, "threads", hint="torch threads per process")
    record = {**settings.as_dict(), "threads": threads, "model_sha256": model_sha256(model),
              "model_classes": model.num_classes}
    dataset = read_settings_dataset(settings, model.categories)
    for skip in dataset.skipped:
        log(skip.line())
    listing = hashlib.sha256("\n".join(f"{i.image_id}\t{i.path}\t{i.class_index}\t{i.boxes}"
                                       for i in dataset.images).encode()).hexdigest()
    record["images_sha256"] = listing
    manifest = {"settings": record, "settings_sha256": settings_digest(record), "camsurvey": camsurvey.__version__,
                "torch": torch.__version__, "images": len(dataset), "shard_files": len(shard_slices(len(dataset),
                                                                                                   settings.shard_size)),
                "skipped_while_reading": [asdict(s) for s in dataset.skipped]}
    path = folder / MANIFEST
    if path.exists():
        old = load_manifest(folder)
        changed = differences(old["settings"], record)
        if changed:
            raise FileExistsError(f"{folder} holds the results of a run with other settings ({'; '.join(changed)}); "
                                  "choose another --out, or pass --new to write this run into a new folder beside it")
    else:
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and is not a results folder of camsurvey evaluate; choose a new "
                                  "or empty folder for --out")
        folder.mkdir(parents=True, exist_ok=True)
        write_file(path, json.dumps(manifest, indent=2) + "\n", what="manifest")
    shards = shard_slices(len(dataset), settings.shard_size)
    pending = [k for k in range(len(shards)) if not shard_path(folder, k).is_file()]
    return Plan(folder, settings, record, dataset, shards, pending, manifest)


def parse_cluster(cluster: str | None) -> int | None:
    """``"local:N"`` -> N (workers of a LocalCluster); ``None`` -> ``None``."""
    if cluster is None:
        return None
    kind, _, count = cluster.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise ValueError(f"--cluster takes local:N (N workers on this machine), got {cluster!r}; for a cluster "
                         "of your own pass its address with --scheduler")
    return int(count)


def run_in_process(plan: Plan, threads: int | None, progress) -> Iterable[ShardResult]:
    for index in plan.pending:
        images = [plan.dataset.images[i] for i in plan.shards[index]]
        yield run_shard(plan.settings, index, images, threads, on_image=lambda: progress.update(1))


def run_on_dask(plan: Plan, client, threads: int | None, progress) -> Iterable[ShardResult]:
    """Submit every pending shard to the cluster; yield each as it completes (in any order)."""
    as_completed = require("dask.distributed").as_completed

    futures = {}
    for index in plan.pending:
        images = [plan.dataset.images[i] for i in plan.shards[index]]
        futures[client.submit(run_shard, plan.settings, index, images, threads, pure=False)] = len(images)
    for future in as_completed(futures):
        result = future.result()
        progress.update(futures[future])
        yield result


def open_client(cluster: str | None, scheduler: str | None, threads: int | None):
    """A Dask client: a LocalCluster of N worker processes (one task at a time each), or the given scheduler."""
    distributed = require("dask.distributed")
    if scheduler is not None:
        return distributed.Client(scheduler), None
    local = distributed.LocalCluster(n_workers=parse_cluster(cluster), threads_per_worker=1, processes=True,
                                     dashboard_address=None)
    return distributed.Client(local), local


def run_evaluation(settings: Settings, folder, *, cluster: str | None = None, scheduler: str | None = None,
                   client=None, threads: int | None = None, new: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print) -> Plan:
    """Evaluate ``settings`` into ``folder`` (see the module docstring); returns the plan it ran.

    ``cluster="local:N"`` starts a LocalCluster, ``scheduler`` connects to one, ``client`` uses
    a ``dask.distributed.Client`` the caller holds (and keeps open). ``threads``: torch threads
    in this process or in each worker (default: torch's choice here, one per worker); the rows
    are identical wherever they are computed with the same count (see :func:`prepare`).
    """
    from tqdm.auto import tqdm

    if sum(x is not None for x in (cluster, scheduler, client)) > 1:
        raise ValueError("give --cluster local:N or --scheduler ADDRESS, not both")
    parse_cluster(cluster)
    if threads is None:  # torch's choice in this process; one thread a worker on a LocalCluster
        threads = torch.get_num_threads() if cluster is None and scheduler is None and client is None else 1
    plan = prepare(settings, folder, threads=threads, new=new, log=log)
    done = len(plan.shards) - len(plan.pending)
    log(f"{len(plan.dataset)} images in {len(plan.shards)} shards: {done} done, {len(plan.pending)} to compute "
        f"({plan.folder})")
    pending_images = sum(len(plan.shards[k]) for k in plan.pending)
    bar = tqdm(total=pending_images, unit="img", desc="evaluate", disable=not progress, smoothing=0.1)
    digest = plan.manifest["settings_sha256"]
    try:
        if client is not None:
            for result in run_on_dask(plan, client, threads, bar):
                finish_shard(plan, result, digest, log)
        elif cluster is None and scheduler is None:
            before = torch.get_num_threads()
            try:
                for result in run_in_process(plan, threads, bar):
                    finish_shard(plan, result, digest, log)
            finally:
                torch.set_num_threads(before)
        else:
            client, local = open_client(cluster, scheduler, threads)
            try:
                for result in run_on_dask(plan, client, threads, bar):
                    finish_shard(plan, result, digest, log)
            finally:
                client.close()
                if local is not None:
                    local.close()
    finally:
        bar.close()
    return plan


def finish_shard(plan: Plan, result: ShardResult, digest: str, log) -> None:
    for skip in result.skipped:
        log(skip.line())
    if not result.rows and not result.skipped:
        return
    write_shard(plan.folder, shard_table(result, digest, plan.columns, plan.dataset.has_boxes))


def default_settings(data, format, model, preset="camsurvey", **overrides) -> Settings:
    """Settings with the protocol ``preset`` and its ``overrides``."""
    return Settings(str(data), format, model, protocol(preset, **overrides))
