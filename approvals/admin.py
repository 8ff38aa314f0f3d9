"""Approvals in the admin: routes (who decides an action, in which stages, with which
escalation) are written here by risk officers; requests are read-only history (people decide
in the inbox)."""

from django import forms
from django.contrib import admin

from approvals.models import ApprovalRequest, ApprovalRoute, ApprovalStage, Decision, RouteStage
from autonomy import masking
from autonomy.admin_view_only import ViewOnly


class RouteStageForm(forms.ModelForm):
    class Meta:
        model = RouteStage
        fields = [
            "number", "name", "approver_group", "quorum", "ttl_seconds", "remind_after_seconds",
            "escalate_after_seconds", "expiry_outcome", "escalate_to_group", "escalate_to_user",
            "escalate_to_role",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        targets = [
            cleaned.get("escalate_to_group"),
            cleaned.get("escalate_to_user"),
            cleaned.get("escalate_to_role"),
        ]
        if sum(bool(t) for t in targets) > 1:
            raise forms.ValidationError(
                "Escalate to one target: a group, a named person or a portal role."
            )
        return cleaned


class RouteStageInline(admin.StackedInline):
    model = RouteStage
    form = RouteStageForm
    extra = 0
    min_num = 1
    ordering = ["number"]
    fieldsets = [
        (None, {"fields": [("number", "name"), ("approver_group", "quorum")]}),
        (
            "Clocks, in seconds (empty: the settings' defaults)",
            {
                "fields": [
                    ("ttl_seconds", "remind_after_seconds", "escalate_after_seconds"),
                    "expiry_outcome",
                ]
            },
        ),  # fmt: skip
        (
            "Escalation target (one of three; empty: the risk officers)",
            {"fields": [("escalate_to_group", "escalate_to_user", "escalate_to_role")]},
        ),
    ]


@admin.register(ApprovalRoute)
class ApprovalRouteAdmin(admin.ModelAdmin):
    inlines = [RouteStageInline]
    list_display = ["name", "enabled", "operation", "business_unit", "min_risk", "max_risk",
                    "min_amount"]  # fmt: skip
    list_filter = ["enabled", "business_unit"]
    list_select_related = ["operation__connector", "business_unit"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        (
            "Matches (empty: any; the most specific enabled route wins: operation, then "
            "unit, then the narrower risk band, then the higher amount)",
            {"fields": ["operation", "business_unit", ("min_risk", "max_risk"), "min_amount"]},
        ),
    ]


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = ["stage", "approver", "verdict", "channel", "comment", "params_view", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Changed parameters")
    def params_view(self, obj):
        """Always masked (``autonomy.masking``): an inline row has no request to ask who
        reads it; what was approved is the action's parameters, on its trace."""
        if obj.params is None:
            return "-"
        return masking.mask(obj.request.action.operation, obj.params, viewer=None)


class ApprovalStageInline(ViewOnly, admin.TabularInline):
    model = ApprovalStage
    extra = 0
    fields = ["number", "name", "approver_group", "quorum", "status", "started_at", "decided_at"]
    readonly_fields = fields


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["subject", "risk_score", "status", "stage", "stages", "approvals", "quorum",
                    "approver_group", "created_at", "expires_at"]  # fmt: skip
    list_filter = ["status", "business_unit", "approver_group"]
    list_select_related = ["approver_group"]
    search_fields = ["subject", "agent__slug"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [ApprovalStageInline, DecisionInline]
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields]
