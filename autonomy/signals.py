"""Kernel events other apps react to, so the kernel never imports them. ``autonomy.actions``
sends the action's, ``autonomy.rollouts.services`` the promotions'.

``action_settled`` is sent inside the transaction that moves an action to a final state
(succeeded, failed, denied by a person or by expiry, cancelled); receivers write in that same
transaction, so their reaction commits or rolls back with the action's new state.
"""

from django.dispatch import Signal

action_settled = Signal()  # kwargs: action
# Sent inside the transaction that records an action the gate sent to people, so the request
# for their decision (``approvals``) commits with it.
action_needs_approval = Signal()  # kwargs: action
# Sent inside the transaction that proposes moving a rollout plan up one wave
# (``autonomy.rollouts``): ``approvals`` opens the request that carries it out when granted
# (calling ``autonomy.rollouts.services.promotion_settle``).
rollout_promotion_proposed = Signal()  # kwargs: promotion
# Sent inside the transaction that closes a waiting promotion without people (the plan moved
# while it waited): whoever waits on it stops waiting.
rollout_promotion_closed = Signal()  # kwargs: promotion
