"""Actions in the admin (read-only: the gate writes them) and the simulate page."""

import json

from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from agents.models import Agent
from autonomy import actions, masking
from autonomy.admin_view_only import ViewOnly
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, Operation, Policy


def _pretty(value) -> str:
    return format_html(
        "<pre style='white-space:pre-wrap'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False),
    )


@admin.register(ActionRequest)
class ActionRequestAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["created_at", "agent", "operation", "verdict", "status", "risk_score"]
    list_filter = ["verdict", "status", "operation__connector"]
    list_select_related = ["agent", "operation__connector"]
    search_fields = ["=id", "agent__slug", "idempotency_key", "request_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    exclude = ["params", "reasons", "risk_factors", "policy_ids", "outcome", "error"]
    readonly_fields = [
        "id", "agent", "credential", "operation", "reason", "idempotency_key", "verdict", "status",
        "risk_score", "amount", "request_id", "created_at", "decided_at", "started_at",
        "finished_at", "attempts", "params_view", "reasons_view", "risk_view", "policies_view",
        "outcome_view",
    ]  # fmt: skip

    def get_object(self, request, object_id, from_field=None):
        """The action with its values as this admin user may see them (``autonomy.masking``):
        the read-only fields below have no request, so they read these."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.shown_params = masking.params_for(obj, viewer=request.user)
            obj.shown_outcome = masking.outcome_for(obj, viewer=request.user)
            obj.shown_reasons = masking.reasons_for(obj, viewer=request.user)
        return obj

    @admin.display(description="Parameters")
    def params_view(self, obj):
        return _pretty(getattr(obj, "shown_params", None))

    @admin.display(description="Reasons")
    def reasons_view(self, obj):
        return _pretty(getattr(obj, "shown_reasons", None))

    @admin.display(description="Risk factors")
    def risk_view(self, obj):
        return _pretty(obj.risk_factors)

    @admin.display(description="Policies")
    def policies_view(self, obj):
        return _pretty(obj.policy_ids)

    @admin.display(description="Outcome")
    def outcome_view(self, obj):
        return _pretty(getattr(obj, "shown_outcome", None) or obj.error)

    def get_urls(self):
        return [
            path(
                "simulate/",
                self.admin_site.admin_view(self.simulate_view),
                name="autonomy_actionrequest_simulate",
            )
        ] + super().get_urls()

    def simulate_view(self, request):
        form = SimulateForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                operation, decision = actions.action_simulate(
                    agent=data["agent"],
                    operation_key=data["operation"].key,
                    params=data["params"],
                    draft_text=data["draft_policy"] or None,
                    replaces=data["replaces"].pk if data["replaces"] else None,
                )
                result = {"operation": operation, "decision": decision}
            except DomainError as exc:
                form.add_error(None, f"{exc.code}: {exc.message} {exc.details or ''}")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Simulate a request",
            "form": form,
            "result": result,
            "result_json": json.dumps(result["decision"].as_dict(), indent=2) if result else "",
        }
        return TemplateResponse(request, "admin/autonomy/actionrequest/simulate.html", context)


class SimulateForm(forms.Form):
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.select_related("role__group", "business_unit"),
        to_field_name="slug",
        widget=forms.TextInput(
            attrs={"placeholder": "agent slug, e.g. finance-invoice-processor-0001"}
        ),
    )
    operation = forms.ModelChoiceField(queryset=Operation.objects.select_related("connector"))
    params = forms.JSONField(initial=dict, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}))
    draft_policy = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80, "style": "font-family:monospace"}),
        help_text="Optional Cedar text evaluated as if it were enabled.",
    )
    replaces = forms.ModelChoiceField(
        queryset=Policy.objects.filter(enabled=True),
        required=False,
        help_text="Evaluate the draft instead of this enabled policy.",
    )
