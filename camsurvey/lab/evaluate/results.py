"""Table I from a results folder: each metric's mean with a bootstrap 95 % interval, ADCC both ways.

``per-image`` ADCC is the mean of the per-image harmonic means (Poppi et al.'s order, the
book's); ``of means`` is the harmonic mean of the averaged parts (the Recipro-CAM code's order,
:func:`adcc_of_means`). The intervals are percentile bootstrap intervals over images
(:func:`bootstrap_interval`, seeded): an image is resampled with all its parts, so the "of
means" interval resamples the three parts together.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ...files import write_file
from ...metrics import HIGHER_IS_BETTER, adcc
from ..evaluation import TABLE_I_REPORTED
from .run import load_manifest, read_rows

BOOTSTRAP_SAMPLES = 1000
PARTS = ("coherency", "complexity", "average_drop")


def adcc_of_means(coherency, complexity, average_drop) -> float:
    """Eq. (10) of the averaged parts: ``3 / (1/mean(coh) + 1/(1 - mean(cx)) + 1/(1 - mean(AD)))``."""
    return float(adcc(np.mean(coherency), np.mean(complexity), np.mean(average_drop)))


def bootstrap_interval(statistic, columns: list[np.ndarray], samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """The 2.5 % and 97.5 % percentiles of ``statistic(*columns)`` over ``samples`` resamplings of the
    rows (the same rows for every column), drawn with a seeded generator."""
    count = len(columns[0])
    if count == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, count, size=(samples, count))
    values = np.array([statistic(*(column[rows] for column in columns)) for rows in draws])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def rows_by_method(table) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {column: values}}`` of the scored rows (skip rows left out), in the table's order."""
    import pyarrow.compute as pc

    scored = table.filter(pc.is_null(table.column("skipped")))
    methods = list(dict.fromkeys(scored.column("method").to_pylist()))
    out = {}
    for method in methods:
        part = scored.filter(pc.equal(scored.column("method"), method)).sort_by("image_id")
        out[method] = {name: part.column(name).to_numpy(zero_copy_only=False) for name in part.column_names}
    return out


def aggregate(table, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """``{method: {"images": n, metric: {"mean", "low", "high"}, "adcc_of_means": {...}}}``.

    A metric's mean leaves out the images where it is undefined (NaN: every box cropped away);
    ``adcc`` is the mean of per-image ADCC and ``adcc_of_means`` the ADCC of the averaged parts.
    """
    summary = {}
    for method, columns in rows_by_method(table).items():
        entry: dict = {"images": len(columns["image_id"])}
        for name in columns:
            if name not in HIGHER_IS_BETTER:
                continue
            values = columns[name].astype(float)
            values = values[~np.isnan(values)]
            low, high = bootstrap_interval(np.mean, [values], samples, seed)
            entry[name] = {"mean": float(np.mean(values)) if len(values) else math.nan, "low": low, "high": high}
        if all(part in columns for part in PARTS):
            parts = [columns[p].astype(float) for p in PARTS]
            low, high = bootstrap_interval(adcc_of_means, parts, samples, seed)
            entry["adcc_of_means"] = {"mean": adcc_of_means(*parts), "low": low, "high": high}
        summary[method] = entry
    return summary


def headline_adcc(entry: dict, averaging: str) -> float:
    """The ADCC a protocol reports: ``"per-image"`` (mean of per-image ADCC) or ``"of-means"``."""
    return entry["adcc" if averaging == "per-image" else "adcc_of_means"]["mean"]


TABLE_ORDER = ("adcc", "adcc_of_means", "average_drop", "increase_in_confidence", "coherency", "complexity",
               "insertion", "deletion", "pointing_game", "iou")
HEADERS = {"adcc": "ADCC per-image", "adcc_of_means": "ADCC of means", "average_drop": "AD",
           "increase_in_confidence": "IC", "coherency": "Coherency", "complexity": "Complexity",
           "insertion": "Insertion", "deletion": "Deletion", "pointing_game": "Pointing", "iou": "IoU"}


def table_rows(summary: dict, digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """Header and rows of Table I (x 100): reported ADCC (Table I of the survey), then each measured
    metric as ``mean [low, high]``."""
    metrics = [m for m in TABLE_ORDER if any(m in entry for entry in summary.values())]
    header = ["method", "images", "reported ADCC", *(HEADERS[m] for m in metrics)]
    rows = []
    for method, entry in summary.items():
        reported = TABLE_I_REPORTED.get(method, "not in Table I")
        cells = [method, str(entry["images"]), "-" if reported is None else str(reported)]
        for metric in metrics:
            value = entry.get(metric)
            cells.append("-" if value is None else
                         f"{100 * value['mean']:.{digits}f} [{100 * value['low']:.{digits}f}, {100 * value['high']:.{digits}f}]")
        rows.append(cells)
    return header, rows


def markdown_table(summary: dict, caption: str = "") -> str:
    header, rows = table_rows(summary)
    lines = [f"| {' | '.join(header)} |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return (caption + "\n\n" if caption else "") + "\n".join(lines) + "\n"


def csv_table(summary: dict) -> str:
    """One row per method and metric: ``method, images, metric, mean, low, high`` (fractions, not x 100)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "images", "metric", "mean", "low", "high"])
    for method, entry in summary.items():
        for metric in TABLE_ORDER:
            if metric in entry:
                value = entry[metric]
                writer.writerow([method, entry["images"], metric, repr(value["mean"]), repr(value["low"]),
                                 repr(value["high"])])
    return buffer.getvalue()


def caption(manifest: dict) -> str:
    """What the measured numbers rest on: data, protocol, model, images (the table's caption)."""
    settings = manifest["settings"]
    chosen = settings["protocol"]
    return (f"*Measured* with camsurvey {manifest['camsurvey']}: {settings['model']} "
            f"(sha256 {settings['model_sha256'][:12]}), {manifest['images']} images of {settings['data']} "
            f"({settings['format']}), protocol {chosen['name']} (headline ADCC: {chosen['adcc']}); x 100, "
            f"mean [bootstrap 95 % interval]. *Reported*: the survey's Table I (Recipro-CAM's Table 1, ResNet-101, "
            "ILSVRC2012 validation).")


def write_tables(folder, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[dict, Path, Path]:
    """Aggregate a results folder and write ``table.md`` and ``table.csv`` in it (replacing earlier ones:
    they are derived from the shard files). Returns ``(summary, markdown path, csv path)``."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    summary = aggregate(read_rows(folder), samples, seed)
    markdown = write_file(folder / "table.md", markdown_table(summary, caption(manifest)), force=True,
                          what="table")
    table_csv = write_file(folder / "table.csv", csv_table(summary), force=True, what="table")
    return summary, markdown, table_csv


