"""The report: ``reporte.xlsx`` from a batch's stored results (``data``: what the stored results
say, in the types of ``model``; ``workbook``: how the file is written, one module per sheet
kind — ``summary``, ``tables`` — on the cells of ``sheet``, with ``styles``, ``layout``,
``links`` and ``safe_text``)."""

from __future__ import annotations

from worker.report.data import build_report, report_data
from worker.report.model import ReportChange, ReportCheck, ReportData, ReportRow
from worker.report.workbook import write_report

__all__ = ["build_report", "report_data", "ReportChange", "ReportCheck", "ReportData",
           "ReportRow", "write_report"]
