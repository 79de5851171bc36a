"""``tfminima report``: figures and markdown from run directories. No TensorFlow.

>>> from tfminima.report import build_report
>>> rep = build_report("runs/quickstart", "runs/quickstart/report", formats="png,pdf")   # doctest: +SKIP
>>> rep.path, rep.warnings                                                             # doctest: +SKIP
(PosixPath('runs/quickstart/report/REPORT.md'), [])

Modules, one job each: ``loading`` (run files → records; the only reader of run files), ``seeds``
(runs equal up to the seed → conditions, means, tested comparisons), ``stats`` (bootstrap intervals,
permutation tests, Spearman ρ with an interval), ``numbers`` (gaps, peaks, β values), ``sharpness``
(equal-loss comparison, edge of stability), ``checks`` (warnings), ``figures`` and
``figures_sharpness`` (one figure per kind), ``markdown``, ``markdown_sections`` and
``markdown_sharpness`` (tables and text), ``paper`` (the paper's reference numbers, cited),
``style`` (η/S colours, legends, formats), ``build`` (puts them together).
"""

from tfminima.report.build import NoReadableRunsError, NoRunsError, Report, build_report, report_group
from tfminima.report.loading import Group, Run, load_groups

__all__ = ["Group", "NoReadableRunsError", "NoRunsError", "Report", "Run", "build_report", "load_groups", "report_group"]
