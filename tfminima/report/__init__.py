"""``tfminima report``: figures (PNG) and markdown from run directories. No TensorFlow.

>>> from tfminima.report import build_report
>>> build_report("runs/quickstart", "runs/quickstart/report")   # doctest: +SKIP
PosixPath('runs/quickstart/report/REPORT.md')

Modules, one job each: ``loading`` (run files → records), ``numbers`` (correlations, gaps, peaks),
``figures`` (one PNG per figure kind), ``markdown`` (tables and text), ``paper`` (the paper's
reference numbers, cited), ``style`` (the η/S colour map), ``build`` (puts them together).
"""

from tfminima.report.build import NoRunsError, build_report, report_group
from tfminima.report.loading import Group, Run, load_groups

__all__ = ["Group", "NoRunsError", "Run", "build_report", "load_groups", "report_group"]
