"""Autonomy levels in the admin: where a level is set, and on which operations."""

from django import forms
from django.contrib import admin

from autonomy import level_settings
from autonomy.errors import DomainError
from autonomy.models import AutonomySetting


def clean_operation_keys(keys) -> list[str]:
    """A form's list of operation keys, checked by ``level_settings.check_operations`` (every
    admin form that narrows something to operations: levels, rollout plans)."""
    try:
        return level_settings.check_operations(keys)
    except DomainError as exc:
        raise forms.ValidationError(exc.message) from None


class AutonomySettingForm(forms.ModelForm):
    class Meta:
        model = AutonomySetting
        fields = ["level", "agent", "role", "business_unit", "template_key", "operations", "note"]

    def clean_operations(self):
        return clean_operation_keys(self.cleaned_data.get("operations"))

    def clean(self):
        cleaned = super().clean()
        try:
            level_settings.check_scope(
                agent=cleaned.get("agent"),
                role=cleaned.get("role"),
                business_unit=cleaned.get("business_unit"),
                template_key=cleaned.get("template_key"),
            )
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(AutonomySetting)
class AutonomySettingAdmin(admin.ModelAdmin):
    form = AutonomySettingForm
    list_display = ["level", "scope", "operations", "note", "created_at"]
    list_filter = ["level"]
    list_select_related = ["agent", "role", "business_unit"]
    autocomplete_fields = ["agent", "role", "business_unit"]
    search_fields = ["template_key", "note", "agent__slug", "role__slug", "business_unit__slug"]
