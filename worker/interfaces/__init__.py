"""Interfaces: the command line and the HR web page."""
