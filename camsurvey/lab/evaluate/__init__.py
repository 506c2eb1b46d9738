"""Table I on a real dataset, at any scale: ``camsurvey evaluate`` and the functions behind it.

* :mod:`.protocol`: the evaluation protocols as named presets (``recipro-cam-paper``, ``camsurvey``);
* :mod:`.scoring`: every metric of a protocol for one image and method (the book's metric functions);
* :mod:`.run`: the run, shard by shard, in this process or on Dask, resumable; Parquet shard files and the manifest;
* :mod:`.results`: Table I from a results folder, with bootstrap intervals, as Markdown and CSV;
* :mod:`.cost`: what a run costs before it runs (``--dry-run``);
* :mod:`.sample`: the small bundled dataset in every format;
* :mod:`.cli`: the command.
"""

from .cost import estimate, format_estimate, method_passes, metric_forwards
from .protocol import PRESETS, Protocol, protocol
from .results import adcc_of_means, aggregate, bootstrap_interval, headline_adcc, markdown_table, write_tables
from .run import Settings, load_manifest, read_rows, run_evaluation

__all__ = ["PRESETS", "Protocol", "Settings", "adcc_of_means", "aggregate", "bootstrap_interval", "estimate",
           "format_estimate", "headline_adcc", "load_manifest", "markdown_table", "method_passes", "metric_forwards", "protocol",
           "read_rows", "run_evaluation", "write_tables"]
