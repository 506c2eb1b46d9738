"""The benchmark's results: ratios, the printed table, the project's targets, recorded runs."""

from __future__ import annotations

import json
from pathlib import Path

from ...files import DATA_DIR
from .peers import PEERS

DEFAULT_OUTPUT = "runs/bench.json"


RECORDED_DIR = DATA_DIR / "bench"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table."""
    settings = result["settings"]
    lines = [f"{settings['model']} layer {settings['layer']} ({settings['channels']} channels, "
             f"{settings['positions']} positions), {settings['input_size']}px, batch {settings['batch']}, "
             f"{settings['device']}, {settings['threads']} threads"]
    header = f"{'method':<18}{'median s':>10}{'irred. s':>10}{'ratio':>7}{'peak MB':>9}  peers (speedup x, pearson)"
    lines += [header, "-" * len(header)]
    for name, record in result["methods"].items():
        if "median_s" not in record:
            lines.append(f"{name:<18}  skipped: {record.get('skipped', '')}")
            continue
        cells = [f"{name:<18}", f"{record['median_s']:>10.4f}", _fmt(record["irreducible_s"], 10, 4),
                 _fmt(record["ratio_to_irreducible"], 7, 2), _fmt(record["peak_memory_mb"], 9, 1)]
        notes = []
        for library, peer in record.get("peers", {}).items():
            if "skipped" in peer:
                notes.append(f"{library}: failed")
            else:
                notes.append(f"{library}: {_fmt(peer['speedup'], 0, 1)}x, r={_fmt(peer['pearson'], 0, 4)}")
        if "reference" in record:
            notes.append(f"slow eq. 4 reference: r={_fmt(record['reference']['pearson'], 0, 5)}")
        lines.append("".join(cells) + "  " + "; ".join(notes))
    for library in PEERS:
        if settings.get(f"{library}_skipped"):
            lines.append(f"note: {library} skipped: {settings[f'{library}_skipped']}")
    return "\n".join(lines)


def load_recorded(name: str) -> dict:
    """A benchmark run recorded in ``data/bench/NAME.json`` (written by ``camsurvey bench``)."""
    path = RECORDED_DIR / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in RECORDED_DIR.glob("*.json")) if RECORDED_DIR.is_dir() else []
        raise FileNotFoundError(f"no recorded benchmark {name!r} in {RECORDED_DIR}; available: {available}")
    return json.loads(path.read_text())


def _median(result: dict, method: str, library: str | None = None) -> float | None:
    record = result["methods"].get(method, {})
    if library is not None:
        record = record.get("peers", {}).get(library, {})
    return record.get("median_s")


def target_checks(result: dict) -> list[dict]:
    """The performance targets of this project, checked against one benchmark run.

    Each check: ``{"claim", "measured", "target", "met"}`` (``measured`` None, ``met`` None when
    the run lacks the numbers, e.g. peers not timed). Targets: Score-CAM at least 2x faster than
    each peer's Score-CAM and within Pearson 0.99 of it, and within 0.999 of the slow eq. 4
    reference; Ablation-CAM and Recipro-CAM at least 100x faster than pytorch-grad-cam's
    Ablation-CAM; every timed method within 1.2x of its irreducible work.
    """
    checks = []

    def check(claim, measured, target, at_least=True):
        met = None if measured is None else (measured >= target if at_least else measured <= target)
        checks.append({"claim": claim, "measured": measured, "target": target, "met": met})

    methods = result["methods"]
    for library in PEERS:
        if "scorecam" not in PEERS[library]:
            continue
        check(f"scorecam speedup over {library}", ratio(_median(result, "scorecam", library),
                                                        _median(result, "scorecam")), 2.0)
        peer = methods.get("scorecam", {}).get("peers", {}).get(library, {})
        check(f"scorecam Pearson with {library}", peer.get("pearson"), 0.99)
    check("scorecam Pearson with the slow eq. 4 reference",
          methods.get("scorecam", {}).get("reference", {}).get("pearson"), 0.999)
    their_ablation = _median(result, "ablationcam", "pytorch-grad-cam")
    for name in ("ablationcam", "reciprocam"):
        check(f"{name} speedup over pytorch-grad-cam's ablationcam", ratio(their_ablation, _median(result, name)),
              100.0)
    for name, record in methods.items():
        if "median_s" in record:
            check(f"{name} time / irreducible work", record.get("ratio_to_irreducible"), 1.2, at_least=False)
    return checks


def format_checks(checks: list[dict]) -> str:
    """:func:`target_checks` as lines ``claim: measured (target) met/missed``."""
    def verdict(check):
        return {True: "met", False: "MISSED", None: "not measured"}[check["met"]]

    sign = {True: ">=", False: "<="}
    lines = []
    for check in checks:
        at_least = "time / irreducible" not in check["claim"]
        lines.append(f"{check['claim']:<55}{_fmt(check['measured'], 9, 3)}  "
                     f"(target {sign[at_least]} {check['target']:g})  {verdict(check)}")
    return "\n".join(lines)


def _fmt(value, width, digits):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def write_json(result: dict, path, force: bool = False) -> Path:
    """Write ``result`` to ``path``; an existing file is only replaced with ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it or choose another --output")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False))
    return path
