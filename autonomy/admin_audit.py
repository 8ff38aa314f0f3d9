"""The audit trail in the admin: read-only for everyone, and an export for auditors."""

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from autonomy import masking, selectors
from autonomy.admin_view_only import ViewOnly
from autonomy.audit import export_lines
from autonomy.models import AuditRecord

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class ExportForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive.")
    fmt = forms.ChoiceField(
        label="Format", choices=[("jsonl", "JSON lines"), ("csv", "CSV")], initial="jsonl"
    )

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("The start date must not be after the end date.")
        return data


@admin.register(AuditRecord)
class AuditRecordAdmin(ViewOnly, admin.ModelAdmin):
    # Append-only: nobody, not even a superuser, adds, edits or deletes records here.
    list_display = ["seq", "created_at", "kind", "actor", "agent_id", "action_id"]
    list_filter = ["kind"]
    date_hierarchy = "created_at"
    search_fields = ["actor", "agent_id", "action_id"]
    show_full_result_count = False
    ordering = ["-seq"]
    exclude = ["payload"]
    readonly_fields = ["payload_view"]

    def get_object(self, request, object_id, from_field=None):
        """The record with its payload as this admin user may see it (``autonomy.masking``);
        the stored record keeps every value."""
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            action = selectors.actions_by_id(ids=[obj.action_id]).get(obj.action_id)
            obj.shown_payload = masking.payload_for(
                action.operation if action else None,
                obj.payload,
                viewer=request.user,
                action=action,
            )
        return obj

    @admin.display(description="Payload")
    def payload_view(self, obj):
        return format_html(
            "<pre style='white-space:pre-wrap'>{}</pre>",
            json.dumps(
                getattr(obj, "shown_payload", None),
                indent=2,
                sort_keys=True,
                ensure_ascii=False,
                default=str,
            ),
        )

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [path("export/", export, name="autonomy_auditrecord_export"), *super().get_urls()]

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ExportForm(request.GET or None)
        if form.is_bound and form.is_valid():
            start, end, fmt = (form.cleaned_data[k] for k in ("start", "end", "fmt"))
            response = StreamingHttpResponse(
                export_lines(start=start, end=end, fmt=fmt, viewer=request.user),
                content_type=CONTENT_TYPES[fmt],
            )
            filename = f"audit-{start:%Y-%m-%d}-to-{end:%Y-%m-%d}.{fmt}"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Export the audit trail",
            "form": form,
        }
        return TemplateResponse(request, "admin/autonomy/auditrecord/export.html", context)
