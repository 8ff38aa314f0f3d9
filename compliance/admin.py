"""The control map in the admin: risk officers edit controls and their framework clauses;
every edit is in the model history (django-auditlog) and so in the audit trail."""

from django import forms
from django.contrib import admin

from compliance.evidence_queries import evidence_key_choices
from compliance.models import Control, FrameworkMapping


class ControlForm(forms.ModelForm):
    evidence_key = forms.ChoiceField(
        choices=evidence_key_choices,
        help_text="The evidence query whose count for a period the compliance page shows.",
    )

    class Meta:
        model = Control
        fields = ["ref", "title", "description", "feature", "evidence", "evidence_key"]


class FrameworkMappingInline(admin.TabularInline):
    model = FrameworkMapping
    extra = 1


@admin.register(Control)
class ControlAdmin(admin.ModelAdmin):
    form = ControlForm
    inlines = [FrameworkMappingInline]
    list_display = ["ref", "title", "evidence_key", "clauses"]
    list_filter = ["mappings__framework"]
    search_fields = ["ref", "title", "description", "mappings__ref"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("mappings")

    @admin.display(description="Framework clauses")
    def clauses(self, control: Control) -> str:
        return ", ".join(str(m) for m in control.mappings.all())
