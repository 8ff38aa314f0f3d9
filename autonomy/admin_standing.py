"""Standing approvals in the admin: read and revoke. They are granted on the portal's grant
page or through the API, where ``may_grant`` (the policy-change permission and separation of
duties) holds; the admin adds and edits none. Revoking goes through
``autonomy.standing.services.standing_revoke``, as everywhere."""

from django.contrib import admin, messages
from django.utils import timezone

from autonomy.admin_view_only import ViewOnly
from autonomy.errors import DomainError
from autonomy.models import StandingApproval
from autonomy.standing import services


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active or scheduled"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(StandingApproval)
class StandingApprovalAdmin(ViewOnly, admin.ModelAdmin):
    list_display = [
        "id", "operation", "scope", "max_risk", "max_amount", "daily_limit", "starts_at",
        "expires_at", "state", "granted_by",
    ]  # fmt: skip
    list_filter = [StateFilter, "operation__connector", "role", "business_unit"]
    list_select_related = [
        "operation__connector", "role", "business_unit", "agent", "granted_by",
    ]  # fmt: skip
    search_fields = ["reason", "agent__slug", "role__slug", "business_unit__slug"]
    date_hierarchy = "created_at"
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, obj: StandingApproval) -> str:
        return obj.state(timezone.now())

    def has_revoke_permission(self, request) -> bool:
        return services.may_revoke(user=request.user)

    @admin.action(permissions=["revoke"], description="Revoke the selected standing approvals")
    def revoke(self, request, queryset):
        done = 0
        for standing in queryset.filter(revoked_at__isnull=True):
            try:
                services.standing_revoke(
                    standing_id=standing.pk, by=request.user, reason="revoked in the admin"
                )
            except DomainError as exc:
                self.message_user(request, f"#{standing.pk}: {exc.message}", messages.WARNING)
            else:
                done += 1
        self.message_user(request, f"Revoked {done} standing approval{'s' if done != 1 else ''}.")
