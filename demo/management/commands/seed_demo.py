import time

from django.core.management.base import BaseCommand

from approvals.suggestions import suggestions_refresh
from demo import (
    approval_routes,
    approvals,
    blueprints,
    connectors,
    drift,
    guardrails,
    masking,
    memory,
    onboarding,
    registry,
    reviews,
    rollouts,
    trials,
    workflows,
)
from workflows.services.rollup import analytics_backfill


class Command(BaseCommand):
    help = "Fill the registry with demo business units, roles, owners and agents (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--agents", type=int, default=1000, help="how many agents (default 1000)"
        )

    def handle(self, *args, agents, **options):
        started = time.perf_counter()
        created = registry.seed(agents=agents)
        created.update(connectors.seed())
        created.update(guardrails.seed())
        created.update(approval_routes.seed())
        created["desk_people"] = approvals.seed_desk()
        created["standing_approvals"] = approvals.seed_standing()
        created.update(workflows.seed())
        created["actions"] = connectors.seed_activity()
        created["memory_entries"] = memory.seed_memory()
        created["drift_flags"] = drift.seed_drift()  # after the first day: it needs it
        created["rollout_plans"] = rollouts.seed_rollout()
        created["approval_history"] = approvals.seed_history()  # after the first day's work
        if created["drift_flags"] or created["rollout_plans"] or created["approval_history"]:
            # their history went in directly: count it on the dashboard
            from autonomy.observability.rollup import rollup_rebuild

            rollup_rebuild()
        created["analytics_rows"] = analytics_backfill()  # runs from before the rollups
        # the suggestions beat proposes from history; the demo's shows from the first page
        created["suggestions"] = suggestions_refresh()["proposed"]
        created["policy_trials"] = trials.seed_trials()
        created["blueprint_agents"] = blueprints.seed_blueprints()
        created["masked_operations"] = masking.seed_masking()
        created["access_reviews"] = reviews.seed_reviews()
        created["onboarding"] = onboarding.seed_onboarding()
        summary = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in created.items())
        self.stdout.write(f"seed_demo: created {summary} in {time.perf_counter() - started:.1f}s")
