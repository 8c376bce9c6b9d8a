"""RESULTS.md's sections, one module per benchmark: ``section(file_name, res, results)``
renders a result file's section as Markdown lines and draws its plots into ``results``.

Imported by :mod:`benchmarks.report` only; a section imports :mod:`benchmarks.harness` at
most, never a script or the report, so the imports form no cycle
(script -> report -> sections -> harness).
"""
