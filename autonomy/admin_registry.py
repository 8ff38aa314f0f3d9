"""Connectors and operations in the admin. Grants are guardian object permissions
(``execute_operation`` / ``execute_connector``) given to a role's group or an agent's
service user, from the "Object permissions" page of each connector or operation."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from guardian.admin import GuardedModelAdmin
from guardian.forms import GroupObjectPermissionsForm, UserObjectPermissionsForm
from guardian.shortcuts import assign_perm, remove_perm

from agents import services as agent_services
from autonomy import grants
from autonomy.connectors import openapi, outbound
from autonomy.connectors import services as connector_services
from autonomy.connectors.errors import ConnectorError
from autonomy.errors import DomainError
from autonomy.models import Connector, Operation

# The config keys that name an address a connector calls (REST base URL, MCP endpoint).
URL_SETTINGS = ("base_url", "url")


class ConnectorForm(forms.ModelForm):
    """The connector, plus one write-only secret: the value is never rendered back."""

    secret_name = forms.SlugField(
        required=False, max_length=60, help_text="Set or replace the secret of this name."
    )
    secret_value = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted, never shown again.",
    )

    class Meta:
        model = Connector
        fields = ["slug", "name", "kind", "description", "enabled", "config"]

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("secret_name")) != bool(cleaned.get("secret_value")):
            raise forms.ValidationError("Give both a secret name and its value, or neither.")
        config = cleaned.get("config")
        for key in URL_SETTINGS:
            url = config.get(key) if isinstance(config, dict) else None
            if url:
                try:
                    outbound.check_url(url)
                except outbound.OutboundRefused as exc:
                    self.add_error("config", f"{key}: {exc}")
        return cleaned


class OpenAPIImportForm(forms.Form):
    url = forms.URLField(required=False, assume_scheme="https", label="Document URL")
    document = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 16, "cols": 100}),
        label="or paste the document (JSON or YAML)",
    )  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("url") and not cleaned.get("document"):
            raise forms.ValidationError("Give the document's URL or paste it.")
        return cleaned


@admin.action(description="Import operations from an OpenAPI document", permissions=["change"])
def import_openapi(modeladmin, request, queryset):
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one connector.", messages.ERROR)
        return None
    return redirect("admin:autonomy_connector_import_openapi", queryset.get().pk)


@admin.action(description="Import operations from the MCP server's tools", permissions=["change"])
def import_mcp_tools(modeladmin, request, queryset):
    for connector in queryset:
        try:
            imported = connector_services.connector_import_mcp_tools(
                connector=connector, by=request.user
            )
        except (DomainError, ConnectorError) as exc:
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            modeladmin.message_user(request, f"{connector.slug}: {message}", messages.ERROR)
            continue
        modeladmin.message_user(
            request, f"{connector.slug}: {len(imported)} operations imported.", messages.SUCCESS
        )


class OperationInline(admin.TabularInline):
    model = Operation
    extra = 0
    fields = ["slug", "name", "effect", "sensitivity", "data_class", "pii", "financial", "enabled"]
    show_change_link = True


class GrantingPermissionsForm:
    """guardian's object-permission forms, with the grant itself going through its owners: a
    new grant to an agent or a role waits for approval (``agents.services.grant_request``)
    and a removed one is revoked (``autonomy.grants.revoke_grant``), both audited; any
    other object permission is guardian's as before."""

    by = None
    request = None

    def _holder(self):
        raise NotImplementedError

    def save_obj_perms(self) -> None:
        perms = set(self.cleaned_data[self.get_obj_perms_field_name()])
        model_perms = {choice[0] for choice in self.get_obj_perms_field_choices()}
        initial = set(self.get_obj_perms_field_initial())
        holder, grant_perm = self._holder(), grants.grant_codename(self.obj)
        subject = self.user if hasattr(self, "user") else self.group
        for perm in (model_perms - perms) & initial:
            if perm == grant_perm and holder is not None:
                grants.revoke_grant(target=self.obj, to=holder, by=self.by)
            else:
                remove_perm(perm, subject, self.obj)
        for perm in perms - initial:
            if perm == grant_perm and holder is not None:
                agent_services.grant_request(target=self.obj, to=holder, by=self.by)
                messages.info(self.request, "The new grant waits for approval in the inbox.")
            else:
                assign_perm(perm, subject, self.obj)


class GrantingUserForm(GrantingPermissionsForm, UserObjectPermissionsForm):
    def _holder(self):
        return getattr(self.user, "agent", None)


class GrantingGroupForm(GrantingPermissionsForm, GroupObjectPermissionsForm):
    def _holder(self):
        return getattr(self.group, "agent_role", None)


class GrantsThroughOwnersMixin:
    """Connectors' and operations' "Object permissions" pages grant through the one rule."""

    def get_obj_perms_manage_user_form(self, request):
        bound = {"by": request.user, "request": request}
        return type("UserGrantForm", (GrantingUserForm,), bound)

    def get_obj_perms_manage_group_form(self, request):
        return type(
            "GroupGrantForm", (GrantingGroupForm,), {"by": request.user, "request": request}
        )


@admin.register(Connector)
class ConnectorAdmin(GrantsThroughOwnersMixin, GuardedModelAdmin):
    form = ConnectorForm
    list_display = ["slug", "name", "kind", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["slug", "name"]
    inlines = [OperationInline]
    actions = [import_openapi, import_mcp_tools]
    readonly_fields = ["stored_secrets", "openapi_link"]

    @admin.display(description="Stored secrets")
    def stored_secrets(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        rows = [
            (name, f"{updated:%Y-%m-%d %H:%M}")
            for name, updated in obj.secrets.values_list("name", "updated_at")
        ]
        return format_html_join(", ", "{} (set {})", rows) or "none"

    @admin.display(description="OpenAPI")
    def openapi_link(self, obj):
        if obj is None or obj.pk is None:
            return "Save the connector first."
        url = reverse("admin:autonomy_connector_import_openapi", args=[obj.pk])
        return format_html('<a class="button" href="{}">Import operations…</a>', url)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        name, value = form.cleaned_data.get("secret_name"), form.cleaned_data.get("secret_value")
        if name and value:
            connector_services.connector_secret_set(
                connector=obj, name=name, value=value, by=request.user
            )

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_openapi_view)
        return [
            path("<int:pk>/import-openapi/", view, name="autonomy_connector_import_openapi"),
            *super().get_urls(),
        ]

    def import_openapi_view(self, request, pk: int):
        connector = get_object_or_404(Connector, pk=pk)
        if not self.has_change_permission(request, connector):
            raise PermissionDenied
        form = OpenAPIImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                document = form.cleaned_data["document"] or openapi.fetch(form.cleaned_data["url"])
                imported = connector_services.connector_import_openapi(
                    connector=connector, document=document, by=request.user
                )
            except (openapi.OpenAPIError, DomainError) as exc:
                form.add_error(None, getattr(exc, "message", None) or str(exc))
            else:
                self.message_user(request, f"Imported {len(imported)} operation(s).")
                return redirect("admin:autonomy_connector_change", connector.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": connector,
            "title": f"Import operations into {connector}",
            "form": form,
        }
        return TemplateResponse(request, "admin/autonomy/connector/import_openapi.html", context)


@admin.register(Operation)
class OperationAdmin(GrantsThroughOwnersMixin, GuardedModelAdmin):
    list_display = [
        "__str__",
        "name",
        "effect",
        "sensitivity",
        "data_class",
        "pii",
        "financial",
        "enabled",
    ]
    list_filter = [
        "connector",
        "effect",
        "sensitivity",
        "data_class",
        "pii",
        "financial",
        "enabled",
    ]
    list_select_related = ["connector"]
    search_fields = ["slug", "name", "connector__slug"]
