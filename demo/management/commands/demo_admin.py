from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (or reset) the local demo administrator and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")

    def handle(self, *args, username, password, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_admin is for the embedded demo, not for production.")
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = True
        user.email = user.email or f"{username}@example.com"
        user.set_password(password)
        user.save()
        # The demo admin also approves and writes policies, so the inbox is not empty for them.
        from django.contrib.auth.models import Group

        from agents.portal_roles import PortalRole, group_name

        roles = (PortalRole.IT_ADMIN, PortalRole.RISK_OFFICER, PortalRole.APPROVER)
        user.groups.add(*Group.objects.filter(name__in=[group_name(r) for r in roles]))
        self.stdout.write(
            self.style.SUCCESS(f"Demo admin: username {username!r}, password {password!r}")
        )
