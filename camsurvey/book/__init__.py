"""The tooling that makes the book: chapter runs, the student edition, grading, widgets.

* :mod:`camsurvey.book.notebooks`: papermill runs with checked parameters (``camsurvey run``),
  refreshing stored outputs (``make outputs``);
* :mod:`camsurvey.book.student`: the student edition (``make student``);
* :mod:`camsurvey.book.grading`: the exercises' checks, variants and grading (``camsurvey grade``);
* :mod:`camsurvey.book.widgets`: the interactive explorer;
* :mod:`camsurvey.book.site`: the HTML build (a Sphinx extension: the survey's equation numbers,
  solutions folded away, MathJax served from the site; the stored-outputs configuration of ``make html``).
"""
