"""A mixin for admin pages (model admins and inlines) that show records and never add, edit
or delete them: the audit trail, action requests, approvals, runs, worker heartbeats."""


class ViewOnly:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
