"""The one vocabulary of decisions (a module of constants, cheap to import).

A decision's result (the audit record's ``decision``, the requests metric's ``result``) is one
of RESULTS; a finding's outcome is one of OUTCOMES. Which outcome a finding gets is
``review.outcome_of``.
"""

from __future__ import annotations

ALLOWED = "allowed"
DENIED = "denied"
WARNED = "warned"
AUDITED = "audited"
EXEMPTED = "exempted"
RESULTS = (ALLOWED, DENIED, WARNED)
OUTCOMES = (DENIED, WARNED, AUDITED, EXEMPTED)
