"""Shared memory in the admin: people see entries with their provenance, correct and delete
them, and purge everything an agent wrote in one step. Every write goes through
``autonomy.memory.services`` (audited); sensitive values are masked for people who may only
view entries."""

import json

from django import forms
from django.contrib import admin, messages

from agents.models import Agent
from autonomy.memory import selectors, services
from autonomy.models import MemoryEntry


class MemoryEntryForm(forms.ModelForm):
    class Meta:
        model = MemoryEntry
        fields = ["value", "sensitivity", "expires_at"]


@admin.register(MemoryEntry)
class MemoryEntryAdmin(admin.ModelAdmin):
    form = MemoryEntryForm
    list_filter = [
        "sensitivity",
        ("business_unit", admin.RelatedOnlyFieldListFilter),
        ("role", admin.RelatedOnlyFieldListFilter),
        "template_key",
        ("agent", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["business_unit", "role", "agent", "written_by"]
    search_fields = ["key", "agent__slug", "=action__id"]
    readonly_fields = [
        "scope", "key", "agent", "action", "action_template_key", "written_by", "created_at",
        "updated_at",
    ]  # fmt: skip
    actions = ["purge_by_provenance", "delete_selected"]

    def get_list_display(self, request):
        def value(entry):
            shown = selectors.value_shown(entry=entry, user=request.user)
            text = shown if isinstance(shown, str) else json.dumps(shown)
            return text if len(text) <= 80 else text[:79] + "…"

        value.short_description = "value"
        return ["key", "scope", value, "sensitivity", "agent", "updated_at", "expires_at"]

    def get_fields(self, request, obj=None):
        return [*self.readonly_fields, "value", "sensitivity", "expires_at"]

    def get_object(self, request, object_id, from_field=None):
        """For people who may only view it, the entry with its value as they may see it
        (masked when sensitive): they cannot save it, so nothing masked is ever written."""
        entry = super().get_object(request, object_id, from_field)
        if entry is not None and not self.has_change_permission(request, entry):
            entry.value = selectors.value_shown(entry=entry, user=request.user)
        return entry

    def has_add_permission(self, request):
        return False  # agents write memory, through the gate

    def has_purge_permission(self, request) -> bool:
        return request.user.has_perm("autonomy.purge_memoryentry")

    def save_model(self, request, obj, form, change):
        services.memory_correct(
            entry=obj,
            by=request.user,
            value=form.cleaned_data["value"],
            sensitivity=form.cleaned_data["sensitivity"],
            expires_at=form.cleaned_data["expires_at"],
        )

    def delete_model(self, request, obj):
        services.memory_delete(entry=obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for entry in queryset:
            services.memory_delete(entry=entry, by=request.user)

    @admin.action(
        permissions=["purge"],
        description="Purge everything the writers of the selected entries wrote",
    )
    def purge_by_provenance(self, request, queryset):
        writers = Agent.objects.filter(pk__in=queryset.values("agent_id")).order_by("slug")
        for agent in writers:
            purged = services.memory_purge(
                agent=agent, by=request.user, reason="purged by provenance in the admin"
            )
            self.message_user(request, f"Purged {purged} entries written by {agent.slug}.")
        if not writers:
            self.message_user(request, "No agent wrote these entries.", messages.WARNING)
