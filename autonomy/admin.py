"""The kernel's admin: each concern registers itself in its own module."""

from autonomy import admin_actions, admin_audit, admin_policy, admin_registry, admin_workers  # noqa: F401
