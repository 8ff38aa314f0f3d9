"""Forms of the approval inbox: one decision, or one verdict for several low-risk requests;
and the terms of a standing approval."""

import uuid

from django import forms
from django.contrib.auth.models import Group

from agents.models import Agent, BusinessUnit, Role
from approvals.models import Verdict
from autonomy import selectors as autonomy_selectors
from autonomy.standing.services import MAX_DAYS

VERDICTS = [(Verdict.APPROVE, "Approve"), (Verdict.REJECT, "Reject")]
BULK_MAX = 200


def redirect_targets():
    """The groups of people a request may be handed to (never an agent role's group)."""
    return Group.objects.filter(agent_role__isnull=True).order_by("name")


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=[*VERDICTS, (Verdict.REDIRECT, "Redirect")])
    redirect_to = forms.ModelChoiceField(
        queryset=redirect_targets(),
        to_field_name="name",
        required=False,
        empty_label="Another group…",
    )
    comment = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Why? Your comment goes into the audit trail."}
        ),
    )


class UUIDListField(forms.Field):
    """Several ``name=<uuid>`` values, as the list's checkboxes send them."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[uuid.UUID]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        try:
            return list(dict.fromkeys(uuid.UUID(str(v)) for v in value))
        except ValueError as exc:
            raise forms.ValidationError("Not a valid request id.") from exc

    def validate(self, value) -> None:
        if not value and self.required:
            raise forms.ValidationError("Select at least one low-risk request.")
        if len(value) > BULK_MAX:
            raise forms.ValidationError(f"Select at most {BULK_MAX} requests at a time.")


class BulkDecisionForm(DecisionForm):
    verdict = forms.ChoiceField(choices=VERDICTS)
    redirect_to = None  # one verdict for several: approve or reject only
    ids = UUIDListField()


class StandingGrantForm(forms.Form):
    """The terms of a standing approval, named as the grant page's GET parameters are
    (``operation``, ``role``, ``unit``, ``agent``, ``max_risk``, ``max_amount``,
    ``daily_limit``, ``days``, ``source``), so a link can prefill it."""

    operation = forms.CharField(max_length=200, help_text="<connector>.<operation>")
    role = forms.ModelChoiceField(
        queryset=Role.objects.order_by("slug"), to_field_name="slug", required=False
    )
    unit = forms.ModelChoiceField(
        queryset=BusinessUnit.objects.order_by("slug"), to_field_name="slug", required=False
    )
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("slug"), to_field_name="slug", required=False
    )
    max_risk = forms.IntegerField(min_value=0, max_value=100)
    max_amount = forms.DecimalField(min_value=0, max_digits=18, decimal_places=2, required=False)
    daily_limit = forms.IntegerField(min_value=1, required=False)
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, initial=7)
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why people need not ask"}),
    )
    source = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def clean_operation(self):
        key = self.cleaned_data["operation"].strip()
        operation = autonomy_selectors.operation_by_key(key=key)
        if operation is None:
            raise forms.ValidationError(f"No operation {key!r}.")
        return operation

    def terms(self) -> dict:
        """The cleaned terms as ``standing_approval_grant`` takes them."""
        data = self.cleaned_data
        return {
            "operation": data["operation"], "role": data["role"], "business_unit": data["unit"],
            "agent": data["agent"], "max_risk": data["max_risk"],
            "max_amount": data["max_amount"], "daily_limit": data["daily_limit"],
            "days": data["days"], "reason": data["reason"],
            "source_request_id": data["source"],
        }  # fmt: skip


class StandingRevokeForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Why it ends now"}),
    )


class GroupDecisionForm(forms.Form):
    """One verdict for a group: up to the newest member the person was shown (``until``),
    leaving out the ones they ticked (``exclude``)."""

    verdict = forms.ChoiceField(choices=VERDICTS)
    comment = DecisionForm.base_fields["comment"]
    until = forms.DateTimeField(widget=forms.HiddenInput)
    exclude = UUIDListField(required=False)

    def clean_exclude(self) -> list[uuid.UUID]:
        return self.cleaned_data.get("exclude") or []
