"""Interventions in the admin: the agent registry's bulk pause, resume, quarantine and kill.

The registry (``agents.admin.AgentAdmin``) sits below the interventions and does not import
them; this module registers the agents' admin again with these actions added. Each action
goes through ``interventions.services``, which checks who may and writes an Intervention row
besides the audit record.
"""

from django.contrib import admin, messages

from agents.admin import AgentAdmin
from agents.models import Agent
from autonomy.errors import DomainError
from interventions import services


def _bulk(service, verb: str, done_word: str, description: str):
    def run(modeladmin, request, queryset):
        done, refused = 0, []
        for agent in queryset:
            try:
                service(agent=agent, by=request.user, reason=f"bulk {verb} in the admin")
                done += 1
            except DomainError as exc:
                refused.append(f"{agent.name}: {exc.message}")
        modeladmin.message_user(request, f"{done_word} {done} agent(s).", messages.SUCCESS)
        if refused:
            modeladmin.message_user(request, "Skipped " + "; ".join(refused[:20]), messages.WARNING)

    run.__name__ = f"bulk_{verb}"
    run.short_description = description
    run.allowed_permissions = ("change",)
    return run


class InterventionsAgentAdmin(AgentAdmin):
    actions = [
        _bulk(services.agent_pause, "pause", "Paused", "Pause selected agents"),
        _bulk(services.agent_resume, "resume", "Resumed", "Resume selected agents"),
        _bulk(services.agent_quarantine, "quarantine", "Quarantined", "Quarantine selected agents"),
        *AgentAdmin.actions,
        _bulk(
            services.agent_kill, "kill", "Killed",
            "Kill selected agents (quarantine, revoke credentials, cancel pending work)",
        ),
    ]  # fmt: skip


admin.site.unregister(Agent)
admin.site.register(Agent, InterventionsAgentAdmin)
