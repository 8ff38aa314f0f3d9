"""The registry in the admin: search, filters, bulk lifecycle actions, credentials, history.

Every write goes through ``agents.services`` so the admin, the API and the CLI behave alike.
"""

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from agents import selectors, services
from agents.models import Agent, BusinessUnit, Credential, Role, Scope
from autonomy.errors import DomainError


class CredentialInline(admin.TabularInline):
    model = Credential
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ["name", "prefix", "scopes", "state_label", "expires_at", "last_used_at", "buttons"]
    readonly_fields = fields
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="State")
    def state_label(self, obj):
        return obj.state()

    @admin.display(description="")
    def buttons(self, obj):
        if obj.pk is None or obj.state() != "active":
            return ""
        rotate, revoke = (
            reverse("admin:agents_agent_credential", args=[obj.agent_id, obj.pk, verb])
            for verb in ("rotate", "revoke")
        )
        # formaction buttons submit the surrounding change form (and its CSRF token) elsewhere.
        return format_html(
            '<button type="submit" class="button" formaction="{}" formmethod="post">'
            "Rotate</button> "
            '<button type="submit" class="button" formaction="{}" formmethod="post">'
            "Revoke</button>",
            rotate,
            revoke,
        )


def _bulk_revoke(modeladmin, request, queryset):
    total = sum(
        services.agent_credentials_revoke(
            agent=a, by=request.user, reason="bulk revoke in the admin"
        )
        for a in queryset
    )
    modeladmin.message_user(request, f"Revoked {total} credential(s).", messages.SUCCESS)


_bulk_revoke.short_description = "Revoke all credentials of selected agents"
_bulk_revoke.allowed_permissions = ("change",)


@admin.register(Agent)
class AgentAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = ["name", "business_unit", "role", "owner", "status", "risk_tier", "page_link"]
    list_filter = ["status", "business_unit", "role", "risk_tier"]

    @admin.display(description="Detail")
    def page_link(self, obj):
        """The portal's agent page: identity, grants, actions, drift flags, risk over time."""
        return format_html('<a href="{}">Open page</a>', reverse("agents:detail", args=[obj.slug]))

    @admin.display(description="Awaiting approval")
    def awaiting_approval(self, obj):
        """What of this agent waits for its unit's owner and security, each with its request."""
        waiting = selectors.changes_waiting(agent=obj) if obj.pk else []
        return (
            format_html_join(
                mark_safe("<br>"),  # a constant: nothing of the user's
                '{} · <a href="{}">the request</a>',
                ((c.summary, reverse("approvals:change", args=[c.pk])) for c in waiting),
            )
            or "—"
        )

    list_select_related = ["business_unit", "role__group", "owner"]
    search_fields = ["name", "slug", "description", "owner__username", "owner__email"]
    autocomplete_fields = ["owner"]
    list_per_page = 50
    show_full_result_count = False
    # Pause, resume, quarantine and kill are interventions: ``interventions.admin`` adds them,
    # from above this registry.
    actions = [_bulk_revoke]
    inlines = [CredentialInline]
    readonly_fields = [
        "status",
        "awaiting_approval",
        "status_reason",
        "status_changed_at",
        "service_user",
        "tokens_valid_after",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "slug",
                    "description",
                    "owner",
                    "business_unit",
                    "role",
                    "risk_tier",
                ]
            },
        ),
        ("Limits", {"fields": ["max_actions_per_minute", "max_daily_spend"]}),
        ("Identity", {"fields": ["service_user", "oidc_client_id", "tokens_valid_after"]}),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "awaiting_approval",
                    "status_reason",
                    "status_changed_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        # What this person may not change of this agent is shown, not offered (the one rule).
        editable = selectors.agent_fields_editable(user=request.user, agent=obj)
        return fields + ["slug"] + [f for f in services.UPDATABLE_FIELDS if f not in editable]

    def has_delete_permission(self, request, obj=None):
        return False  # agents are retired, never deleted: their history must stay

    def save_model(self, request, obj, form, change):
        if change:
            changes = {
                f: form.cleaned_data[f] for f in form.changed_data if f in services.UPDATABLE_FIELDS
            }
            services.agent_update(agent=obj, by=request.user, **changes)
            return
        data = {
            f: form.cleaned_data[f]
            for f in ["name", "slug", "description", "owner", "business_unit", "role", "risk_tier"]
        }
        data["oidc_client_id"] = form.cleaned_data.get("oidc_client_id") or None
        created = services.agent_register(by=request.user, **data)
        obj.__dict__.update(created.__dict__)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/credentials/issue/",
                view(self.issue_credential_view),
                name="agents_agent_issue_credential",
            ),
            path(
                "<path:object_id>/credentials/<uuid:credential_id>/<str:verb>/",
                view(self.credential_view),
                name="agents_agent_credential",
            ),
        ] + super().get_urls()

    def _agent(self, request, object_id) -> Agent:
        agent = self.get_object(request, unquote(object_id))
        if agent is None:
            raise Http404
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        return agent

    def issue_credential_view(self, request, object_id):
        agent = self._agent(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "agent": agent,
            "scopes": Scope.choices,
            "title": f"Issue a credential for {agent}",
        }
        if request.method == "POST":
            expires = request.POST.get("expires_days", "").strip()
            try:
                days = int(expires) if expires else None
                credential, token = services.credential_issue(
                    agent=agent,
                    by=request.user,
                    name=request.POST.get("name") or "default",
                    scopes=request.POST.getlist("scopes") or None,
                    expires_at=timezone.now() + timezone.timedelta(days=days) if days else None,
                )
            except (ValueError, DomainError) as exc:
                messages.error(request, getattr(exc, "message", str(exc)))
            else:
                return self._show_token(request, agent, credential, token)
        return TemplateResponse(request, "admin/agents/agent/issue_credential.html", context)

    def credential_view(self, request, object_id, credential_id, verb):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        agent = self._agent(request, object_id)
        credential = Credential.objects.filter(agent=agent, pk=credential_id).first()
        if credential is None:
            raise Http404
        change_url = reverse("admin:agents_agent_change", args=[agent.pk])
        try:
            if verb == "rotate":
                new, token = services.credential_rotate(credential=credential, by=request.user)
                return self._show_token(request, agent, new, token, rotated=credential)
            if verb == "revoke":
                services.credential_revoke(
                    credential=credential, by=request.user, reason="revoked in the admin"
                )
                messages.success(
                    request,
                    f"Credential {credential.prefix}… revoked. Its next request will be refused.",
                )
                return HttpResponseRedirect(change_url)
        except DomainError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(change_url)
        raise Http404

    def _show_token(self, request, agent, credential, token, rotated=None):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "agent": agent,
            "credential": credential,
            "token": token,
            "rotated": rotated,
            "title": "Credential issued",
        }
        response = TemplateResponse(request, "admin/agents/agent/credential_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Credential)
class CredentialAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = [
        "prefix",
        "name",
        "agent",
        "state_label",
        "scope_list",
        "expires_at",
        "last_used_at",
        "created_at",
    ]
    list_select_related = ["agent"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["prefix", "name", "agent__name", "agent__slug"]
    readonly_fields = [
        "agent",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_reason",
        "rotated_from",
    ]
    exclude = ["token_hash"]
    actions = ["revoke"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False  # issued from the agent's page, where the token is shown once

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="State")
    def state_label(self, obj):
        return obj.state()

    @admin.display(description="Scopes")
    def scope_list(self, obj):
        return format_html_join(", ", "{}", ((s,) for s in obj.scopes))

    @admin.action(description="Revoke selected credentials", permissions=["change"])
    def revoke(self, request, queryset):
        for credential in queryset:
            services.credential_revoke(
                credential=credential, by=request.user, reason="revoked in the admin"
            )
        self.message_user(request, f"Revoked {queryset.count()} credential(s).", messages.SUCCESS)


@admin.register(BusinessUnit)
class BusinessUnitAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = ["name", "slug", "owner", "created_at"]
    list_select_related = ["owner"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["owner"]


@admin.register(Role)
class RoleAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    show_auditlog_history_link = True
    list_display = ["group", "slug", "default_risk_tier", "created_at"]
    list_select_related = ["group"]
    search_fields = ["slug", "group__name", "description"]
    list_filter = ["default_risk_tier"]


# Registered by importing: personal API tokens and blueprints.
from agents import admin_blueprints, admin_user_tokens  # noqa: E402, F401
