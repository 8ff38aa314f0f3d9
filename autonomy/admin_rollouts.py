"""Rollout plans in the admin: a plan and its waves are written here; the wave a plan is at
moves only through ``autonomy.rollouts.services`` (the plan's page and the API), so it is
read only, and promotions, the history and the measurements are records, never edited."""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from autonomy.admin_levels import clean_operation_keys
from autonomy.admin_view_only import ViewOnly
from autonomy.models import (
    RolloutEvent,
    RolloutMeasurement,
    RolloutPlan,
    RolloutPromotion,
    RolloutWave,
)


class RolloutPlanForm(forms.ModelForm):
    class Meta:
        model = RolloutPlan
        fields = [
            "name", "slug", "description", "role", "template_key", "operations", "held_level",
            "window_minutes", "auto_propose", "active", "owner", "approver_group",
        ]  # fmt: skip

    def clean_operations(self):
        return clean_operation_keys(self.cleaned_data.get("operations"))

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("role") and not cleaned.get("template_key"):
            raise forms.ValidationError(
                "Say whom the plan covers: a role's agents, a workflow template's, or both."
            )
        return cleaned


class RolloutWaveInline(admin.StackedInline):
    model = RolloutWave
    extra = 0
    ordering = ["number"]
    autocomplete_fields = ["agents", "business_units"]
    fieldsets = [
        (None, {"fields": [("number", "name", "level"), "everyone", "agents", "business_units"]}),
        (
            "Entry criteria (measured on the waves before it; empty: not required)",
            {
                "fields": [
                    ("min_actions", "max_denial_ratio", "max_failure_ratio"),
                    ("max_open_drift_flags", "max_override_ratio"),
                ]
            },
        ),
        (
            "Guards while it is current",
            {"fields": [("guard_failures", "guard_window_minutes", "guard_drift_flag")]},
        ),
    ]


class PromotionInline(ViewOnly, admin.TabularInline):
    model = RolloutPromotion
    extra = 0
    fields = ["created_at", "from_wave", "to_wave", "status", "proposed_by", "decided_at"]
    readonly_fields = fields
    ordering = ["-created_at"]
    show_change_link = True


@admin.register(RolloutPlan)
class RolloutPlanAdmin(admin.ModelAdmin):
    form = RolloutPlanForm
    inlines = [RolloutWaveInline, PromotionInline]
    list_display = ["name", "slug", "role", "template_key", "current_wave", "active", "page"]
    list_filter = ["active", "held_level"]
    list_select_related = ["role__group"]
    search_fields = ["name", "slug", "template_key", "description"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["role", "owner", "approver_group"]
    readonly_fields = ["current_wave", "wave_since", "created_at", "page"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "page"]}),
        ("Whom it covers", {"fields": ["role", "template_key", "operations", "held_level"]}),
        (
            "Promotion",
            {"fields": ["window_minutes", "auto_propose", "owner", "approver_group", "active"]},
        ),
        (
            "Where it is (moves only through a promotion's approval or a demotion)",
            {"fields": ["current_wave", "wave_since", "created_at"]},
        ),
    ]

    @admin.display(description="Plan page")
    def page(self, obj):
        if not obj.pk:
            return "—"
        return format_html('<a href="{}">Open the plan’s page</a>', obj.get_absolute_url())


@admin.register(RolloutPromotion)
class RolloutPromotionAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["plan", "from_wave", "to_wave", "status", "proposed_by", "created_at"]
    list_filter = ["status"]
    list_select_related = ["plan", "proposed_by"]
    search_fields = ["plan__name", "plan__slug"]


@admin.register(RolloutEvent)
class RolloutEventAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["created_at", "plan", "kind", "from_wave", "to_wave", "actor", "reason"]
    list_filter = ["kind"]
    list_select_related = ["plan"]
    search_fields = ["plan__name", "plan__slug", "actor", "reason"]


@admin.register(RolloutMeasurement)
class RolloutMeasurementAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["at", "plan", "wave", "met"]
    list_filter = ["met"]
    list_select_related = ["plan"]
    date_hierarchy = "at"
