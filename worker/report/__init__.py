"""The report: reporte.xlsx from a batch's stored results."""
