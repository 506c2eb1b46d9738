"""Datasets the book explains and measures on.

* :mod:`camsurvey.datasets.scenes`: the synthetic scenario dataset of survey Section VI.C
  (large, small, several same, several different objects; exact masks and boxes).
"""
