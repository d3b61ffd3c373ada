"""Run reports: Markdown + PNG plots of a simulated (or replayed) loop run.

Shared by ``npo demo`` and ``npo simulate``: :func:`write_run_report` takes a
:class:`~npo.simulation.driver.SimulationRun` and writes ``report.md``, the per-step
series and the plots into a folder.
"""

from npo.report.writer import plot_run, write_run_report

__all__ = ["plot_run", "write_run_report"]
