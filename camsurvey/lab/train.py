"""Train the scene models: ``camsurvey train --help``.

Trains a :func:`camsurvey.models.scenes_cnn.scenes_cnn` on single-object scenes (the
``large`` and ``small`` scenarios, interleaved) from :mod:`camsurvey.datasets.scenes`, seeded and
deterministic, on one CPU thread by default (so the result does not depend on the machine's
core count). Two models:

* ``scenes_cnn``: plain single-object scenes;
* ``scenes_cnn_cue``: the same scenes with a spurious cue (a mark in the top-left corner on
  every training image of class ``disc`` and on no other), evaluated with the cue as in
  training, without it, and with it placed at random (survey Section VI.A).

Outputs go to ``--output`` (default ``runs/``) as ``NAME.pt`` (a state dict) and ``NAME.json``
(settings, per-epoch history, held-out accuracies, confusion matrix, the weights' sha256); an
existing file is never overwritten without ``--force``. The committed files in ``data/`` are
regenerated only with ``--update-data`` (which writes there and may overwrite them).

The full schedules are the defaults; ``--train-size 600 --epochs 1`` is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import files
from ..common import batches, sha256_of
from ..datasets import scenes
from ..models.scenes_cnn import SCENE_MODELS, committed_paths, scenes_cnn
from ..predict import predict_labels

# data seeds are offsets of the run's --seed, so training, validation and test images never coincide
TRAIN_SEED, VALIDATION_SEED, TEST_SEED = 1000, 2000, 3000
SINGLE = ("large", "small")


def data_options(name: str, split: str) -> dict:
    """``generate`` options of model ``name`` for ``split``: the cue model sees the cue in training."""
    if name == "scenes_cnn_cue" and split in ("train", "validation"):
        return {"cue": "class", "cue_class": 0}
    return {}


# The scene model learns from every symmetry of the square (each object is drawn at a random
# angle, so a rotated or mirrored scene is another valid scene); the cue model sees its scenes
# as drawn, so that its spurious mark stays in the top-left corner where the bias experiment
# looks for it.
AUGMENTATION = {"scenes_cnn": "dihedral", "scenes_cnn_cue": "none"}


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """``"dihedral"``: each image under a random one of the 8 symmetries of the square (quarter
    turns, with or without a mirror); ``"none"``: the images as they are."""
    if kind == "none":
        return images
    if kind != "dihedral":
        raise ValueError(f"unknown augmentation {kind!r}; choose 'dihedral' or 'none'")
    turns = torch.randint(0, 4, (len(images),), generator=generator)
    mirrored = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    return torch.stack([torch.rot90(image, int(k), dims=(-2, -1)) for image, k in zip(images, turns)])


def accuracy(model, batch: scenes.SceneBatch) -> float:
    """Fraction of ``batch`` whose top-1 class is its label (the model put in eval mode)."""
    model.eval()
    return (predict_labels(model, batch.images) == batch.labels).float().mean().item()


def confusion_matrix(model, batch: scenes.SceneBatch) -> torch.Tensor:
    """(C, C) counts: row = true class, column = predicted class."""
    classes = len(scenes.CLASSES)
    model.eval()
    predicted = predict_labels(model, batch.images)
    return torch.bincount(batch.labels * classes + predicted, minlength=classes * classes).view(classes, classes)


def multi_label_recall(model, batch: scenes.SceneBatch) -> float:
    """Use a single-label model on multi-label scenes: rank the classes by score and take as many
    as the image has classes (top-k, k = number of classes present); the mean fraction found."""
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(batch.images[s]) for s in batches(len(batch), 500)])
    present = batch.multi_hot.bool()
    found = []
    for row, k in zip(range(len(batch)), present.sum(1).tolist()):
        top = scores[row].topk(k).indices
        found.append(present[row, top].float().mean())
    return torch.stack(found).mean().item()


def evaluation_sets(name: str, size: int, seed: int) -> dict:
    """The held-out test sets of model ``name``: ``label -> SceneBatch``."""
    if name == "scenes_cnn_cue":
        return {cue: scenes.generate_mixed(SINGLE, size, seed, cue=cue, cue_class=0)
                for cue in ("class", "none", "random")}
    return {"none": scenes.generate_mixed(SINGLE, size, seed)}


def train(name: str = "scenes_cnn", *, train_size: int = 20000, validation_size: int = 1000, test_size: int = 2000,
          epochs: int = 16, batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
          threads: int = 1, progress: bool = True, log=print):
    """Train model ``name``; returns ``(model, record)``, the record being what the JSON log holds."""
    if name not in SCENE_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {SCENE_MODELS}")
    for key, value in (("train_size", train_size), ("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{key} must be at least 1, got {value}")
    started = time.perf_counter()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_set = scenes.generate_mixed(SINGLE, train_size, TRAIN_SEED + seed, progress=progress,
                                      **data_options(name, "train"))
    validation = scenes.generate_mixed(SINGLE, validation_size, VALIDATION_SEED + seed,
                                       **data_options(name, "validation"))
    log(f"generated {train_size} training and {validation_size} validation scenes "
        f"in {time.perf_counter() - started:.0f} s")
    model = scenes_cnn(name).to(memory_format=torch.channels_last)  # about 20 % faster on a CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-train_size // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                   pct_start=0.15)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(train_size, generator=generator)
        total_loss, correct = 0.0, 0
        parts = batches(train_size, batch_size)
        if progress:
            from tqdm.auto import tqdm

            parts = tqdm(list(parts), desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)
        for part in parts:
            index = order[part]
            images, labels = train_set.images[index], train_set.labels[index]
            images = augment(images, AUGMENTATION[name], generator).contiguous(memory_format=torch.channels_last)
            scores = model(images)
            loss = F.cross_entropy(scores, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(index)
            correct += (scores.argmax(1) == labels).sum().item()
        entry = {"epoch": epoch, "train_loss": round(total_loss / train_size, 5),
                 "train_accuracy": round(correct / train_size, 5),
                 "validation_accuracy": round(accuracy(model, validation), 5),
                 "seconds": round(time.perf_counter() - started, 1)}
        history.append(entry)
        log(json.dumps(entry))
    model.eval()
    tests = evaluation_sets(name, test_size, TEST_SEED + seed)
    record = {
        "model": name,
        "classes": list(scenes.CLASSES),
        "settings": {"train_size": train_size, "validation_size": validation_size, "test_size": test_size,
                     "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                     "seed": seed, "threads": threads, "scenarios": list(SINGLE),
                     "data_seeds": {"train": TRAIN_SEED + seed, "validation": VALIDATION_SEED + seed,
                                    "test": TEST_SEED + seed},
                     "train_data": data_options(name, "train"), "augmentation": AUGMENTATION[name]},
        "history": history,
        "test_accuracy": {cue: round(accuracy(model, batch), 5) for cue, batch in tests.items()},
        "confusion_matrix": confusion_matrix(model, next(iter(tests.values()))).tolist(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.perf_counter() - started, 1),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine()},
    }
    log(f"test accuracy {record['test_accuracy']} after {record['train_seconds']} s")
    return model, record


def output_paths(weights_path, overwrite: bool = False, update_data: bool = False) -> tuple[Path, Path]:
    """``(weights, log)`` checked by the rule of :mod:`camsurvey.files` (not in data/ or book/, no
    overwrite without --force); ``update_data`` is the one deliberate exception: the committed files."""
    weights_path = Path(weights_path)
    protected = [] if update_data else files.PROTECTED
    for path in (weights_path, weights_path.with_suffix(".json")):
        files.check_output(path, protected=protected, what="training output")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise FileExistsError(f"{path} exists; pass --force to overwrite it or choose another --output folder")
    return weights_path, weights_path.with_suffix(".json")


def save(model, record: dict, weights_path: Path, overwrite: bool = False, update_data: bool = False) -> Path:
    """Write ``weights_path`` (.pt) and the JSON log beside it, with the weights' sha256, each atomically."""
    weights_path, log_path = output_paths(weights_path, overwrite, update_data)
    protected = [] if update_data else files.PROTECTED
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    with files.staged_file(weights_path, force=True, protected=protected, what="weights") as partial:
        torch.save(model.state_dict(), partial)
        record = dict(record, sha256=sha256_of(partial), weights_file=weights_path.name)
    files.write_file(log_path, json.dumps(record, indent=1) + "\n", force=True, protected=protected, what="training log")
    return log_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="camsurvey train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="scenes_cnn", choices=SCENE_MODELS, help="which model to train")
    parser.add_argument("--output", default="runs", help="folder for NAME.pt and NAME.json (default: runs/)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files in --output")
    parser.add_argument("--update-data", action="store_true",
                        help="write the committed files data/NAME.pt and data/NAME.json instead (overwrites them)")
    parser.add_argument("--train-size", type=int, default=20000, help="training scenes (default 20000)")
    parser.add_argument("--validation-size", type=int, default=1000, help="validation scenes (default 1000)")
    parser.add_argument("--test-size", type=int, default=2000, help="held-out test scenes (default 2000)")
    parser.add_argument("--epochs", type=int, default=16, help="passes over the training scenes (default 16)")
    parser.add_argument("--batch-size", type=int, default=128, help="default 128")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the order and the data")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: results then do not depend on the core count)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.update_data:
        weights_path = committed_paths(args.model)[0]
    else:
        weights_path = Path(args.output) / f"{args.model}.pt"
        try:  # fail before training, not after
            output_paths(weights_path, overwrite=args.force)
        except (ValueError, FileExistsError) as error:
            parser.error(str(error))
    model, record = train(args.model, train_size=args.train_size, validation_size=args.validation_size,
                          test_size=args.test_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, threads=args.threads, progress=not args.quiet)
    record["command"] = "camsurvey train " + " ".join(sys.argv[1:] if argv is None else argv)
    log_path = save(model, record, weights_path, overwrite=args.force or args.update_data, update_data=args.update_data)
    print(f"wrote {weights_path} and {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def plot_history(record: dict, ax=None):
    """Training loss and training/validation accuracy per epoch, from a training log."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    epochs = [e["epoch"] for e in record["history"]]
    ax.plot(epochs, [e["train_accuracy"] for e in record["history"]], "o-", label="train accuracy")
    ax.plot(epochs, [e["validation_accuracy"] for e in record["history"]], "s-", label="validation accuracy")
    ax.plot(epochs, [e["train_loss"] for e in record["history"]], "^--", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_title(f"{record['model']} (measured, from its training log)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_confusion(matrix, classes=scenes.CLASSES, ax=None, title="confusion matrix (measured)"):
    """A (C, C) count matrix, rows = true class, columns = predicted class."""
    import matplotlib.pyplot as plt

    matrix = torch.as_tensor(matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix.numpy(), cmap="Blues")
    for (row, column), count in zip(torch.cartesian_prod(torch.arange(len(classes)), torch.arange(len(classes))).tolist(),
                                    matrix.flatten().tolist()):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return ax
