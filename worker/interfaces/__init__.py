"""Interfaces: the command line (``cli.main``, the ``constancias`` console script) and the HR
web page (``web``). Nothing is imported here: ``python -m worker.interfaces.cli`` must not
find its own module already loaded."""
