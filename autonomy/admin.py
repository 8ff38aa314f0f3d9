"""The kernel's admin: each concern registers itself in its own module."""

from autonomy import (  # noqa: F401
    admin_actions,
    admin_audit,
    admin_content,
    admin_levels,
    admin_memory,
    admin_policy,
    admin_registry,
    admin_rollouts,
    admin_standing,
    admin_workers,
)
