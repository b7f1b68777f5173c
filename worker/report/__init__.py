"""The report: ``reporte.xlsx`` from a batch's stored results (``data``: what the stored results
say; ``workbook``: how the sheets are written)."""

from __future__ import annotations

from worker.report.data import build_report, report_data
from worker.report.workbook import ReportChange, ReportCheck, ReportData, ReportRow, write_report

__all__ = ["build_report", "report_data", "ReportChange", "ReportCheck", "ReportData",
           "ReportRow", "write_report"]
