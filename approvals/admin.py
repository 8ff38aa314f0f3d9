"""Approval requests in the admin: read-only history (people decide in the inbox)."""

from django.contrib import admin

from approvals.models import ApprovalRequest, Decision
from autonomy.admin_view_only import ViewOnly


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = ["approver", "verdict", "channel", "comment", "params", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["subject", "risk_score", "status", "approvals", "quorum", "approver_group",
                    "created_at", "expires_at"]  # fmt: skip
    list_filter = ["status", "business_unit", "approver_group"]
    list_select_related = ["approver_group"]
    search_fields = ["subject", "agent__slug"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [DecisionInline]
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields]
