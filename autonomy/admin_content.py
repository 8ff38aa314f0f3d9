"""Content rules in the admin: a detector, its options, an effect and a scope. Saving or
deleting one moves the policy-store version (``autonomy.policy.receivers``), so the gate
applies it from the next decision in every process."""

from django import forms
from django.contrib import admin

from autonomy.content import detectors
from autonomy.models import ContentEffect, ContentRule, Detector

LISTS = {
    Detector.FORBIDDEN_TERMS: "terms",
    Detector.REQUIRED_TERMS: "terms",
    Detector.RECIPIENT_DOMAINS: "domains",
}


class ContentRuleForm(forms.ModelForm):
    class Meta:
        model = ContentRule
        fields = [
            "name", "detector", "options", "effect", "operation", "connector", "business_unit",
            "role", "enabled",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        detector, options = cleaned.get("detector"), cleaned.get("options") or {}
        if not isinstance(options, dict):
            raise forms.ValidationError({"options": 'An object, e.g. {"terms": ["..."]}.'})
        key = LISTS.get(detector)
        if key:
            values = options.get(key)
            if (
                not values
                or not isinstance(values, list)
                or not all(isinstance(v, str) and v.strip() for v in values)
            ):
                raise forms.ValidationError({"options": f'This detector needs {{"{key}": [...]}}.'})
        schemes = options.get("schemes") or []
        unknown = sorted(set(schemes) - set(detectors.NATIONAL_IDS))
        if detector == Detector.NATIONAL_ID and unknown:
            raise forms.ValidationError(
                {"options": f"Unknown schemes {unknown}; known: {sorted(detectors.NATIONAL_IDS)}."}
            )
        if cleaned.get("effect") == ContentEffect.REDACT and detector in (
            Detector.REQUIRED_TERMS,
            Detector.RECIPIENT_DOMAINS,
        ):
            raise forms.ValidationError({"effect": "Only text that was found can be redacted."})
        return cleaned


@admin.register(ContentRule)
class ContentRuleAdmin(admin.ModelAdmin):
    form = ContentRuleForm
    list_display = ["name", "detector", "effect", "scope", "enabled"]
    list_filter = ["detector", "effect", "enabled"]
    list_select_related = ["operation__connector", "connector", "business_unit", "role"]
    autocomplete_fields = ["business_unit", "role"]
    search_fields = ["name"]

    @admin.display(description="Applies to")
    def scope(self, rule: ContentRule) -> str:
        parts = [
            f"operation {rule.operation}" if rule.operation_id else "",
            f"connector {rule.connector.slug}" if rule.connector_id else "",
            f"unit {rule.business_unit.slug}" if rule.business_unit_id else "",
            f"role {rule.role.slug}" if rule.role_id else "",
        ]
        return ", ".join(p for p in parts if p) or "everything"
