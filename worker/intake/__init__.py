"""Intake: a spreadsheet in, the rows and their CURPs out."""
