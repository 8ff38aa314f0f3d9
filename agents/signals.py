"""Registry events the apps above react to, so the registry never imports them.

Both are sent inside the transaction that writes the change, so a receiver's reaction
(``approvals`` opening or closing the request for people) commits or rolls back with it.
"""

from django.dispatch import Signal

# A registry change waits for people (``agents.services.registry_change_request``).
registry_change_requested = Signal()  # kwargs: change
# A waiting registry change went away without people (its agent was retired meanwhile).
registry_change_closed = Signal()  # kwargs: change
