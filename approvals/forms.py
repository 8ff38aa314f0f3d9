"""Forms of the approval inbox: one decision, or one verdict for several low-risk requests."""

import uuid

from django import forms
from django.contrib.auth.models import Group

from approvals.models import Verdict

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


class GroupDecisionForm(forms.Form):
    """One verdict for a group: up to the newest member the person was shown (``until``),
    leaving out the ones they ticked (``exclude``)."""

    verdict = forms.ChoiceField(choices=VERDICTS)
    comment = DecisionForm.base_fields["comment"]
    until = forms.DateTimeField(widget=forms.HiddenInput)
    exclude = UUIDListField(required=False)

    def clean_exclude(self) -> list[uuid.UUID]:
        return self.cleaned_data.get("exclude") or []
