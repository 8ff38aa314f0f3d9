"""Autonomy levels in the admin: where a level is set, and on which operations."""

from django import forms
from django.contrib import admin

from autonomy.models import AutonomySetting, Operation


def clean_operation_keys(keys) -> list[str]:
    """A form's list of operation keys (``<connector>.<operation>``), each one registered;
    shared by every admin form that narrows something to operations (levels, rollout plans)."""
    keys = keys or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise forms.ValidationError('A list of operation keys, e.g. ["erp.pay_invoice"].')
    known = {
        f"{connector}.{slug}"
        for connector, slug in Operation.objects.values_list("connector__slug", "slug")
    }
    unknown = sorted(set(keys) - known)
    if unknown:
        raise forms.ValidationError(f"No such operation: {', '.join(unknown)}.")
    return keys


class AutonomySettingForm(forms.ModelForm):
    class Meta:
        model = AutonomySetting
        fields = ["level", "agent", "role", "business_unit", "template_key", "operations", "note"]

    def clean_operations(self):
        return clean_operation_keys(self.cleaned_data.get("operations"))

    def clean(self):
        cleaned = super().clean()
        scopes = [
            cleaned.get("agent"),
            cleaned.get("role"),
            cleaned.get("business_unit"),
            cleaned.get("template_key"),
        ]
        if sum(1 for scope in scopes if scope) != 1:
            raise forms.ValidationError(
                "Set the level on exactly one of an agent, a role, a business unit or a "
                "workflow template."
            )
        return cleaned


@admin.register(AutonomySetting)
class AutonomySettingAdmin(admin.ModelAdmin):
    form = AutonomySettingForm
    list_display = ["level", "scope", "operations", "note", "created_at"]
    list_filter = ["level"]
    list_select_related = ["agent", "role", "business_unit"]
    autocomplete_fields = ["agent", "role", "business_unit"]
    search_fields = ["template_key", "note", "agent__slug", "role__slug", "business_unit__slug"]
