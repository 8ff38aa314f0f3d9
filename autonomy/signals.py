"""Kernel events other apps react to, so the kernel never imports them. ``autonomy.actions``
sends both.

``action_settled`` is sent inside the transaction that moves an action to a final state
(succeeded, failed, denied by a person or by expiry, cancelled); receivers write in that same
transaction, so their reaction commits or rolls back with the action's new state.
"""

from django.dispatch import Signal

action_settled = Signal()  # kwargs: action
# Sent inside the transaction that records an action the gate sent to people, so the request
# for their decision (``approvals``) commits with it.
action_needs_approval = Signal()  # kwargs: action
