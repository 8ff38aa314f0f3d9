"""The tamper-evident audit trail: every decision, outcome, approval, intervention and admin
change appends a hash-chained record in the same transaction as the change itself.

The kernel's surface is ``append`` (with ``deferred``), ``verify_chain`` and
``export_lines``; nothing else.
"""

from autonomy.audit.chain import ChainReport, append, deferred, verify_chain
from autonomy.audit.export import export_lines

__all__ = ["ChainReport", "append", "deferred", "export_lines", "verify_chain"]
