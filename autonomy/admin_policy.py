"""Cedar policies in the admin: edit with validation, switch on and off, read the schema.

Writes go through ``autonomy.policy.services``; an invalid policy is refused by the form
with Cedar's own messages on the text field and never reaches the database.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from autonomy.admin_view_only import ViewOnly
from autonomy.errors import DomainError
from autonomy.models import Policy, PolicySetVersion, PolicyVersion
from autonomy.policy import engine, services
from autonomy.policy.schema import build_schema


class PolicyForm(forms.ModelForm):
    class Meta:
        model = Policy
        fields = ["name", "description", "text", "enabled"]
        widgets = {
            "text": forms.Textarea(
                attrs={"rows": 18, "cols": 100, "spellcheck": "false", "class": "vLargeTextField"}
            )
        }

    def clean(self):
        cleaned = super().clean()
        text = cleaned.get("text")
        if text:
            for error in engine.validate(text):
                self.add_error("text", error)
        return cleaned


def _set_enabled(enabled: bool):
    verb = "enable" if enabled else "disable"

    def run(modeladmin, request, queryset):
        done, refused = 0, []
        for policy in queryset:
            try:
                services.policy_set_enabled(policy=policy, enabled=enabled, by=request.user)
                done += 1
            except DomainError as exc:
                errors = exc.details.get("fields", {}).get("text", [])
                refused.append(f"{policy.name}: {'; '.join(errors) or exc.message}")
        modeladmin.message_user(request, f"{verb.capitalize()}d {done} policy(ies).")
        if refused:
            modeladmin.message_user(request, "Refused " + " | ".join(refused[:20]), messages.ERROR)

    run.__name__ = f"{verb}_policies"
    run.short_description = f"{verb.capitalize()} selected policies"
    run.allowed_permissions = ("change",)
    return run


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ["name", "enabled", "version", "updated_at", "author"]
    list_filter = ["enabled"]
    list_select_related = ["author"]
    search_fields = ["name", "description", "text"]
    readonly_fields = ["version", "author", "created_at", "updated_at"]
    fields = ["name", "description", "text", "enabled", *readonly_fields]
    actions = [_set_enabled(True), _set_enabled(False)]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        services.policy_save(
            policy=obj,
            name=data["name"],
            text=data["text"],
            description=data.get("description", ""),
            enabled=data.get("enabled", False),
            by=request.user,
        )

    def delete_model(self, request, obj):
        services.policy_delete(policy=obj, by=request.user)

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            services.policy_delete(policy=policy, by=request.user)

    def get_urls(self):
        view = self.admin_site.admin_view(self.schema_view)
        return [path("schema/", view, name="autonomy_policy_schema")] + super().get_urls()

    def schema_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Cedar schema",
            "schema_json": json.dumps(build_schema(), indent=2),
        }
        return TemplateResponse(request, "admin/autonomy/policy/schema.html", context)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ViewOnly, admin.ModelAdmin):
    """Immutable history: read here, diffed and rolled back on the portal's policy pages."""

    list_display = ["policy_name", "number", "change", "enabled", "author_name", "created_at"]
    list_filter = ["change", "enabled"]
    search_fields = ["policy_name", "text", "note"]
    list_select_related = ["policy"]


@admin.register(PolicySetVersion)
class PolicySetVersionAdmin(ViewOnly, admin.ModelAdmin):
    """Which policy versions were in force after each change."""

    list_display = ["number", "summary", "author_name", "created_at"]
    search_fields = ["summary"]
