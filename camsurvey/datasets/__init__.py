"""Datasets the book explains and measures on.

* :mod:`camsurvey.datasets.scenes`: the synthetic scenario dataset of survey Section VI.C
  (large, small, several same, several different objects; exact masks and boxes);
* :mod:`camsurvey.datasets.annotated`: labelled images in ImageNet's, Pascal VOC's and
  class-per-folder layouts, with their boxes (what ``camsurvey evaluate`` reads).
"""
