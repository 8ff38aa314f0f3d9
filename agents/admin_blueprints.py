"""Blueprints in the admin: list, change, and "Stamp agents" from one.

Writes go through ``agents.blueprints`` (create, update re-applies to every agent, stamp), so
the admin and the bundle's apply behave alike; the form checks with ``blueprint_check``
first, so a refused value shows on its field instead of failing the save."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from agents import blueprints
from agents.models import Blueprint, BusinessUnit
from autonomy.errors import DomainError
from autonomy.models import AutonomyLevel

FORM_FIELDS = [f for f in blueprints.FIELDS]


class BlueprintForm(forms.ModelForm):
    autonomy_level = forms.ChoiceField(
        choices=[("", "none set")] + list(AutonomyLevel.choices), required=False
    )

    class Meta:
        model = Blueprint
        fields = ["slug", "role", *FORM_FIELDS]
        help_texts = {
            "operations": 'JSON list of operation keys, e.g. ["erp.read-invoice"]',
            "policies": 'JSON list of Cedar texts; {{role}} stands for Role::"<slug>"',
        }

    def clean(self):
        data = super().clean()
        role = data.get("role") or getattr(self.instance, "role", None)
        values = {f: data[f] for f in FORM_FIELDS if f in data and f != "name"}
        values.pop("description", None)
        try:
            data.update(blueprints.blueprint_check(role=role, **values))
        except DomainError as exc:
            fields = exc.details.get("fields", {})
            for name, errors in fields.items():
                target = name if name in self.fields else None
                for error in errors if isinstance(errors, list) else [errors]:
                    self.add_error(target, error)
            if not fields:
                self.add_error(None, exc.message)
        return data


class StampForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=500, initial=5)
    business_unit = forms.ModelChoiceField(queryset=BusinessUnit.objects.all())
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_active=True))


@admin.register(Blueprint)
class BlueprintAdmin(admin.ModelAdmin):
    form = BlueprintForm
    list_display = [
        "name", "slug", "role", "risk_tier", "autonomy_level", "max_actions_per_minute",
        "max_daily_spend", "version", "agent_count",
    ]  # fmt: skip
    list_select_related = ["role__group"]
    search_fields = ["slug", "name", "role__slug"]
    list_filter = ["risk_tier", "role"]
    readonly_fields = ["version", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(agent_total=Count("agents"))

    @admin.display(description="Agents", ordering="agent_total")
    def agent_count(self, obj):
        return obj.agent_total

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields + ["slug", "role"] if obj is not None else fields

    def has_delete_permission(self, request, obj=None):
        return False  # its agents keep pointing at it; retire them instead

    def save_model(self, request, obj, form, change):
        if change:
            changes = {f: form.cleaned_data[f] for f in form.changed_data if f in FORM_FIELDS}
            updated = blueprints.blueprint_update(blueprint=obj, by=request.user, **changes)
        else:
            data = {f: form.cleaned_data[f] for f in FORM_FIELDS if f != "name"}
            updated = blueprints.blueprint_create(
                slug=form.cleaned_data["slug"], name=form.cleaned_data["name"],
                role=form.cleaned_data["role"], by=request.user, **data,
            )  # fmt: skip
        obj.__dict__.update(updated.__dict__)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/stamp/", view(self.stamp_view), name="agents_blueprint_stamp"),
        ] + super().get_urls()

    def stamp_view(self, request, object_id):
        blueprint = self.get_object(request, unquote(object_id))
        if blueprint is None:
            raise Http404
        if not (self.has_change_permission(request, blueprint) and blueprints.may_manage(
            user=request.user
        )):  # fmt: skip
            raise PermissionDenied
        form = StampForm(request.POST or None, initial={"owner": request.user.pk})
        if request.method == "POST" and form.is_valid():
            try:
                stamped = blueprints.blueprint_stamp(
                    blueprint=blueprint, count=form.cleaned_data["count"],
                    business_unit=form.cleaned_data["business_unit"],
                    owner=form.cleaned_data["owner"], by=request.user,
                )  # fmt: skip
            except DomainError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Stamped {len(stamped)} agents from {blueprint}.")
                return HttpResponseRedirect(
                    reverse("admin:agents_blueprint_change", args=[blueprint.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "blueprint": blueprint,
            "form": form,
            "title": f"Stamp agents from {blueprint}",
        }
        return TemplateResponse(request, "admin/agents/blueprint/stamp.html", context)
