"""Portal flows: one module per portal, one entry function each, registered by name
(``flows.registry``), and what the flows share (steps, captcha, mailbox, pdf, evidence)."""

from __future__ import annotations

from flows.registry import Portal, get_flow, names, portal, portals, register

__all__ = ["Portal", "get_flow", "names", "portal", "portals", "register"]
