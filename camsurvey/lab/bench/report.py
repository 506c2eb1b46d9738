"""The benchmark's results: ratios, the printed table, the project's targets, recorded runs."""

from __future__ import annotations

import json
from pathlib import Path

from ... import files
from ...files import DATA_DIR, PROTECTED
from .peers import PEERS

DEFAULT_OUTPUT = "runs/bench.json"


RECORDED_DIR = DATA_DIR / "bench"

# Our methods also timed in another method's rounds, for the targets that compare them with that
# method's peers: Recipro-CAM against pytorch-grad-cam's Ablation-CAM (a per-pair ratio like any other).
COMPANIONS = {"ablationcam": ("reciprocam",)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def format_table(result: dict) -> str:
    """The benchmark as a plain-text table: each ratio with its per-pair spread [min-max], what the
    machine was doing (others' load, the CPU seconds the process got per wall second), the flags."""
    settings = result["settings"]
    lines = [f"{settings['model']} layer {settings['layer']} ({settings['channels']} channels, "
             f"{settings['positions']} positions), {settings['input_size']}px, batch {settings['batch']}, "
             f"{settings['device']}, {settings['threads']} threads"
             + (f" (chosen by {settings['threads_chosen_by']})" if settings.get("threads_chosen_by") else ""),
             f"timing: {protocol(result)}"]
    header = (f"{'method':<13}{'median s':>9}{'irred. s':>9}  {'ratio [min-max]':<17}{'peak MB':>8}{'others':>7}"
              f"{'cpu/wall':>9}  peers: speedup x [min-max], pearson")
    lines += [header, "-" * len(header)]
    for name, record in result["methods"].items():
        if "median_s" not in record:
            lines.append(f"{name:<13}  skipped: {record.get('skipped', '')}")
            continue
        load = record.get("load", {})
        cells = [f"{name:<13}", f"{record['median_s']:>9.4f}", _fmt(record["irreducible_s"], 9, 4), "  ",
                 f"{_with_spread(record, 'ratio_to_irreducible', 2):<17}", _fmt(record["peak_memory_mb"], 8, 1),
                 _fmt(load.get("others_load"), 7, 1), _fmt(load.get("cpu_per_wall"), 9, 2)]
        notes = []
        for library, peer in record.get("peers", {}).items():
            if "speedup" not in peer:
                notes.append(f"{library}: failed")
            else:
                notes.append(f"{library}: {_with_spread(peer, 'speedup', 1, 'x')}, r={_fmt(peer['pearson'], 0, 4)}")
        if "reference" in record:
            notes.append(f"slow eq. 4 reference: r={_fmt(record['reference']['pearson'], 0, 5)}")
        if "ratio_to_camsurvey_model" in record:
            notes.append(f"plain / camsurvey model: {_with_spread(record, 'ratio_to_camsurvey_model', 2, 'x')}")
        lines.append("".join(cells) + "  " + "; ".join(notes))
    for library in PEERS:
        if settings.get(f"{library}_skipped"):
            lines.append(f"note: {library} skipped: {settings[f'{library}_skipped']}")
    reasons = untrusted(result)
    lines += [f"flag: {reason}" for reason in reasons]
    if "protocol" in settings:
        lines.append(f"{len(reasons)} flag(s): do not trust the ratios flagged above (rounds that disagree, or a "
                     f"busy machine); rerun them, on a quiet machine and with more rounds" if reasons else "no flags: every ratio's pairs agree "
                     f"within {settings['disagreement_factor']:g}x and no method was timed on a busy machine")
    return "\n".join(lines)


def protocol(result: dict) -> str:
    """How the run was timed (runs recorded before interleaving timed each contender's repeats in a row)."""
    return result["settings"].get("protocol", "sequential: every repeat of one contender, then the next's "
                                              "(recorded before interleaving; ratios of medians, no spread)")


def untrusted(result: dict) -> list[str]:
    """Why a run's ratios are not to be trusted: every method's flags (pairs that disagree, a busy
    machine), as ``"method: flag"``; empty when the machine was quiet enough. ``--strict`` fails on any."""
    return [f"{name}: {flag}" for name, record in result["methods"].items() for flag in record.get("flags", [])]


def _with_spread(record: dict, key: str, digits: int, unit: str = "") -> str:
    """``record[key]`` with its per-pair spread ``[min-max]`` where the run recorded one."""
    value, spread = record.get(key), record.get(f"{key}_spread")
    if value is None:
        return "-"
    if spread is None:
        return f"{value:.{digits}f}{unit}"
    return f"{value:.{digits}f}{unit} [{spread[0]:.{digits}f}-{spread[1]:.{digits}f}]"


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

    Each check: ``{"claim", "measured", "spread", "target", "met"}``: ``measured`` the median of
    the per-pair ratios and ``spread`` their [min, max] (``None`` for runs recorded before
    interleaving, whose ratios are ratios of medians); ``measured`` and ``met`` None when the run
    lacks the numbers, e.g. peers not timed. Targets: Score-CAM at least 2x faster than each
    peer's Score-CAM and within Pearson 0.99 of it, and within 0.999 of the slow eq. 4 reference;
    Ablation-CAM and Recipro-CAM at least 100x faster than pytorch-grad-cam's Ablation-CAM
    (Recipro-CAM is timed in Ablation-CAM's rounds for this, :data:`COMPANIONS`); every timed
    method within 1.2x of its irreducible work.
    """
    checks = []

    def check(claim, record, key, target, at_least=True):
        measured = record.get(key)
        met = None if measured is None else (measured >= target if at_least else measured <= target)
        checks.append({"claim": claim, "measured": measured, "spread": record.get(f"{key}_spread"),
                       "target": target, "at_least": at_least, "met": met})

    methods = result["methods"]
    for library in PEERS:
        if "scorecam" not in PEERS[library]:
            continue
        peer = methods.get("scorecam", {}).get("peers", {}).get(library, {})
        check(f"scorecam speedup over {library}", peer, "speedup", 2.0)
        check(f"scorecam Pearson with {library}", peer, "pearson", 0.99)
    check("scorecam Pearson with the slow eq. 4 reference", methods.get("scorecam", {}).get("reference", {}),
          "pearson", 0.999)
    ablation = methods.get("ablationcam", {})
    check("ablationcam speedup over pytorch-grad-cam's ablationcam",
          ablation.get("peers", {}).get("pytorch-grad-cam", {}), "speedup", 100.0)
    companion = ablation.get("companions", {}).get("reciprocam", {}).get("peers", {}).get("pytorch-grad-cam")
    if companion is None and "protocol" not in result["settings"]:  # recorded before interleaving
        companion = {"speedup": ratio(_median(result, "ablationcam", "pytorch-grad-cam"),
                                      _median(result, "reciprocam"))}
    check("reciprocam speedup over pytorch-grad-cam's ablationcam", companion or {}, "speedup", 100.0)
    for name, record in methods.items():
        if "median_s" in record:
            check(f"{name} time / irreducible work", record, "ratio_to_irreducible", 1.2, at_least=False)
    if result["settings"].get("plain_module"):
        for name, record in methods.items():
            if "median_s" not in record:
                continue
            check(f"{name}: plain module / camsurvey model", record, "ratio_to_camsurvey_model", 1.2,
                  at_least=False)
            timed = [peer for peer in record.get("peers", {}).values() if "speedup" in peer]
            if timed:  # no slower than the fastest peer: the smallest speedup is at least 1
                check(f"{name}: speedup over the fastest peer", min(timed, key=lambda p: p["speedup"]),
                      "speedup", 1.0)
    return checks


def format_checks(checks: list[dict]) -> str:
    """:func:`target_checks` as lines ``claim: measured [min-max] (target) met/missed``."""
    def verdict(check):
        return {True: "met", False: "MISSED", None: "not measured"}[check["met"]]

    sign = {True: ">=", False: "<="}
    lines = []
    for check in checks:
        at_least = check["at_least"]
        spread = "" if check.get("spread") is None else f"[{check['spread'][0]:.3g}-{check['spread'][1]:.3g}]"
        lines.append(f"{check['claim']:<55}{_fmt(check['measured'], 9, 3)} {spread:<15} "
                     f"(target {sign[at_least]} {check['target']:g})  {verdict(check)}")
    return "\n".join(lines)


def _fmt(value, width, digits):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def check_output(path, force: bool = False, recorded: bool = False) -> Path:
    """``path`` as a Path if :func:`write_json` may write it, else the error that says what to do:
    the rule of :mod:`camsurvey.files`, except that ``recorded`` (``--update-data``) may replace
    the recorded run the book reads in data/."""
    path = Path(path)
    inside = [folder for folder in PROTECTED if folder.resolve() in path.resolve().parents]
    if inside and not recorded:
        raise ValueError(f"refusing to write {path} into the repository's {inside[0].name}/ folder; choose another "
                         f"--output, or pass --update-data to replace the recorded run the book reads")
    return files.check_new_file(path, force=force or recorded, protected=() if recorded else PROTECTED,
                                what="benchmark result")


def write_json(result: dict, path, force: bool = False, recorded: bool = False) -> Path:
    """Write ``result`` to ``path`` atomically (:func:`camsurvey.files.write_file`); an existing file is only
    replaced with ``force``, and the repository's data/ and book/ only with ``recorded``."""
    path = check_output(path, force, recorded)
    text = json.dumps(result, indent=2, allow_nan=False)
    return files.write_file(path, text, force=force or recorded, protected=() if recorded else PROTECTED,
                            what="benchmark result")


def recorded_path(model: str, size: int, device: str) -> Path:
    """Where ``--update-data`` writes a recorded run, ``data/bench/MODEL_SIZE_DEVICE.json`` (:func:`load_recorded`)."""
    return RECORDED_DIR / f"{model}_{size}_{device}.json"


def format_ratio(summary: dict, digits: int = 1) -> str:
    """A ratio of :func:`camsurvey.lab.bench.compare` as ``median x [min-max]`` (over the pairs)."""
    return f"{summary['median']:.{digits}f}x [{summary['min']:.{digits}f}-{summary['max']:.{digits}f}]"
