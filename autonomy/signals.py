"""Kernel events other apps react to, so the kernel never imports them.

``action_settled`` is sent inside the transaction that moves an action to a final state
(succeeded, failed, denied by a person or by expiry, cancelled); receivers write in that same
transaction, so their reaction commits or rolls back with the action's new state.
"""

from django.dispatch import Signal

action_settled = Signal()  # kwargs: action
