"""The benchmark of survey Section V.C: every method's time against its irreducible work and the peers.

    camsurvey bench --model efficientnet_lite0 --size 224 --batch 1 --output runs/bench.json

For one model, layer, input size and batch it times every method of :data:`camsurvey.METHODS`
(or those given with ``--methods``) and, in the same run, the implementations that
pytorch-grad-cam and torchcam (optional, dev-only peers) give of the methods they share. For
each method it reports

* the median wall time over ``repeats`` calls after one warm-up call (:mod:`.timing`);
* the **irreducible work**: the passes the method cannot avoid (its registry ``cost``),
  priced with pass times measured in the same run (:mod:`.costs`) -- one forward
  pass of the batch, one forward + backward pass to the layer, further forward passes at the
  best per-image throughput this machine reaches, head passes (after the split) likewise;
* the ratio of the two, the ratio to each peer (:mod:`.peers`), the peak memory of the call,
  and the Pearson correlation of our map with each peer's.

:mod:`.run` runs it, :mod:`.report` prints and checks it, :mod:`.sweeps` holds the performance
chapter's sweeps. Speed is a benchmark, never a test assertion: timings depend on the machine
and its load.
"""

from .cli import main
from .costs import irreducible_seconds, layer_shape, method_cost, pass_timings
from .peers import PEERS, peer_explain, scorecam_reference
from .report import format_checks, format_table, load_recorded, ratio, target_checks, write_json
from .run import run_benchmark
from .sweeps import fit_loglog_slope, loglog_plot, machine, time_methods
from .timing import PeakMemory, measure, median_time, time_call

__all__ = ["PEERS", "PeakMemory", "fit_loglog_slope", "format_checks", "format_table", "irreducible_seconds",
           "layer_shape", "load_recorded", "loglog_plot", "machine", "main", "measure", "median_time", "method_cost",
           "pass_timings", "peer_explain", "ratio", "run_benchmark", "scorecam_reference", "target_checks",
           "time_call", "time_methods", "write_json"]
