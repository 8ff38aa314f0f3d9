"""The tamper-evident audit trail, built like a transparency log: every decision, outcome,
approval, intervention and admin change appends a keyed record in the same transaction as
the change itself; a sealer chains them in order; signed heads are published outside the
database.

The kernel's surface is ``append``, ``seal``, ``publish``, ``verify_chain`` and
``export_lines``; nothing else.
"""

from autonomy.audit.chain import append, seal
from autonomy.audit.checkpoint import NotExtending, publish
from autonomy.audit.export import export_lines
from autonomy.audit.verify import ChainReport, verify_chain

__all__ = [
    "ChainReport",
    "NotExtending",
    "append",
    "export_lines",
    "publish",
    "seal",
    "verify_chain",
]
