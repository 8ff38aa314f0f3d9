from django.core.management.base import BaseCommand

from agents import behaviour
from agents.models import Agent, AgentStatus


class Command(BaseCommand):
    help = "Learn (or relearn) agents' behaviour baselines from their recent action history."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=14, help="history window (default 14)")
        parser.add_argument("slugs", nargs="*", help="only these agents (default: every active)")

    def handle(self, *args, days, slugs, **options):
        agents = (
            Agent.objects.filter(slug__in=slugs)
            if slugs
            else Agent.objects.filter(status=AgentStatus.ACTIVE)
        )
        count = 0
        for agent in agents.iterator():
            behaviour.baseline_learn(agent=agent, window_days=days)
            count += 1
        self.stdout.write(f"learn_baselines: {count} baselines learned over {days} days")
