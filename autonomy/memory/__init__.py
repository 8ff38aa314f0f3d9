"""Shared memory across runs: what agents remember ("customer 4411 prefers e-mail"), scoped
by business unit, role or workflow template.

Agents reach it only through the gate, as the operations of the built-in ``memory``
connector (``memory.read``, ``memory.write``, ``memory.delete``, ``memory.search``), so
grants, policy, limits, audit and traces apply as to any other operation. They run in the
request that asked for them once the gate allows them (``autonomy.connectors.runs_inline``):
a read answers in the ``POST /api/v1/actions/`` answer itself.

- ``selectors``: THE scoping rule (which entries an agent may see or write), and reads.
- ``services``: the connector type behind the operations, and people's writes (correct,
  delete, purge by provenance), audited; expiry pruned on beat.
- ``registry``: the built-in connector and its operations, ensured after every migrate.
"""
