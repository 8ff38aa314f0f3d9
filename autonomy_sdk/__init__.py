"""Autonomy OS SDK for agents: ask the gate, take part in workflows, coordinate.

    from autonomy_sdk import Client
    with Client("http://127.0.0.1:8000", token="aos_...") as aos:
        result = aos.act("erp.post-invoice", {"invoice_id": "INV-1", "amount": 120},
                         reason="monthly run")   # waits through approval and execution
        task = aos.next_task()                   # a workflow task, claimed for you
        aos.complete_task(task.id, {"ok": True})

Needs only ``httpx``; it never imports Django.
"""

from autonomy_sdk import errors
from autonomy_sdk.client import Action, AsyncClient, Claim, Client, Rollout, Task

__all__ = ["Action", "AsyncClient", "Claim", "Client", "Rollout", "Task", "errors"]
