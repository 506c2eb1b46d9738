"""The laboratory: what measures the methods, built on the library (``camsurvey`` core).

* :mod:`camsurvey.lab.evaluation`: every metric for every method, on photos and scenes, and Table I;
* :mod:`camsurvey.lab.evaluate`: ``camsurvey evaluate``, Table I on a labelled dataset, sharded, on Dask;
* :mod:`camsurvey.lab.experiments`: the experiments of survey Section VI, with their statistics;
* :mod:`camsurvey.lab.bench`: the benchmark of Section V.C (``camsurvey bench``);
* :mod:`camsurvey.lab.train`: training the scene models (``camsurvey train``).

Imports run one way: the book tooling (:mod:`camsurvey.book`) uses the lab, the lab uses the
library, never the reverse.
"""
