"""The benchmark of survey Section V.C: every method's time against its irreducible work and the peers.

    camsurvey bench --model efficientnet_lite0 --size 224 --batch 1 --output runs/bench.json

For one model, layer, input size and batch it times every method of :data:`camsurvey.METHODS`
(or those given with ``--methods``) and, in the same run, the implementations that
pytorch-grad-cam and torchcam (optional, dev-only peers) give of the methods they share. For
each method it reports

* its median wall time, and the **irreducible work**: the passes the method cannot avoid (its
  registry ``cost``), priced with pass times (:mod:`.costs`) -- one forward pass of the batch,
  one forward + backward pass to the layer, further forward passes at the best per-image
  throughput this machine reaches, head passes (after the split) likewise;
* the ratio of the two, the speedup over each peer, the peak memory of the call, and the
  Pearson correlation of our map with each peer's.

Every ratio compares timings taken seconds apart: the method, its peers and its passes are
called in interleaved rounds (:mod:`.interleave`), and a ratio is the median of the per-round
ratios, given with its spread (min--max over rounds); what the machine was doing meanwhile
(load average, CPU time against wall time) is recorded beside it (:mod:`.load`), and ratios
whose pairs disagree, or that were taken on a busy machine, are flagged (``--strict`` fails).
The thread count is the cores other work leaves free (:func:`camsurvey.common.free_threads`).

:mod:`.run` runs it, :mod:`.report` prints and checks it, :mod:`.sweeps` holds the performance
chapter's sweeps and interleaved comparisons. Speed is a benchmark, never a test assertion:
timings depend on the machine and its load.
"""

from .cli import main
from .costs import irreducible_in_round, irreducible_seconds, layer_shape, method_cost, pass_calls, pass_timings
from .interleave import DISAGREEMENT, compare, interleave, pair_ratios, round_orders, summarize_ratios
from .load import BUSY_LOAD, LoadMonitor, others_load, process_cpu_seconds
from .peers import PEERS, peer_explain, scorecam_reference
from .report import (
    COMPANIONS,
    check_output,
    format_checks,
    format_ratio,
    format_table,
    load_recorded,
    protocol,
    ratio,
    recorded_path,
    target_checks,
    untrusted,
    write_json,
)
from .run import BenchSettings, run_benchmark
from .sweeps import compare_methods, fit_loglog_slope, loglog_plot, machine, time_methods
from .timing import PeakMemory, measure, median_time, time_call, warm_up

__all__ = ["BUSY_LOAD", "COMPANIONS", "DISAGREEMENT", "PEERS", "BenchSettings", "LoadMonitor", "PeakMemory",
           "check_output", "compare", "compare_methods", "fit_loglog_slope", "format_checks", "format_ratio",
           "format_table", "interleave", "irreducible_in_round", "irreducible_seconds", "layer_shape",
           "load_recorded", "loglog_plot", "machine", "main", "measure", "median_time", "method_cost", "others_load",
           "pair_ratios", "pass_calls", "pass_timings", "peer_explain", "process_cpu_seconds", "protocol", "ratio",
           "recorded_path", "round_orders", "run_benchmark", "scorecam_reference", "summarize_ratios",
           "target_checks", "time_call", "time_methods", "untrusted", "warm_up", "write_json"]
