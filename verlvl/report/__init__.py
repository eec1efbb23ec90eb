"""The run report: one self-contained HTML page with a run's plots, config and samples (`python -m verlvl.report`)."""

from verlvl.report.build import write_report

__all__ = ["write_report"]
