"""Access reviews in the admin: read-only history (people answer on /reviews/)."""

from django.contrib import admin

from autonomy.admin_view_only import ViewOnly
from reviews.models import AccessReview, ReviewItem


class ReviewItemInline(ViewOnly, admin.TabularInline):
    model = ReviewItem
    extra = 0
    fields = ["kind", "agent", "operation", "connector", "credential", "decision", "decided_by"]
    readonly_fields = fields


@admin.register(AccessReview)
class AccessReviewAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["business_unit", "period", "status", "opened_at", "due_at"]
    list_filter = ["status", "period"]
    inlines = [ReviewItemInline]
