"""``manage.py governance export|plan|apply BUNDLE``: governance as code.

BUNDLE is a directory (kept in git), a .zip or a .tar.gz. ``plan`` exits 0 when live
governance matches the bundle, 2 when applying would change it, 1 when the bundle is invalid.
``apply`` shows the plan, asks (unless ``--yes``), and applies exactly that plan, refused if
live governance moved meanwhile (or since ``--expect-live DIGEST``, from a reviewed plan).
"""

import json
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from autonomy.errors import DomainError
from governance import bundle, selectors, services
from governance.plans import render


class Command(BaseCommand):
    help = "Export, plan and apply governance bundles (roles, grants, policies, levels, ...)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True)
        export = sub.add_parser("export", help="write live governance as a bundle")
        export.add_argument(
            "path", metavar="BUNDLE", help="a directory, or a file ending .zip or .tar.gz"
        )
        export.add_argument("--source", default="", help="who/where, for bundle.yaml")
        plan = sub.add_parser("plan", help="show what applying the bundle would change")
        plan.add_argument("path", metavar="BUNDLE")
        plan.add_argument("--json", dest="as_json", action="store_true", help="the plan as JSON")
        apply = sub.add_parser("apply", help="apply the bundle's plan")
        apply.add_argument("path", metavar="BUNDLE")
        apply.add_argument("--user", required=True, help="the person applying (username)")
        apply.add_argument("--yes", action="store_true", help="do not ask")
        apply.add_argument("--prune", action="store_true", help="also make removals")
        apply.add_argument("--expect-live", default=None, help="the digest the plan showed")

    def handle(self, *args, verb, **options):
        try:
            return getattr(self, f"_{verb}")(**options)
        except DomainError as exc:
            details = json.dumps(exc.details, indent=2, default=str) if exc.details else ""
            raise CommandError(f"{exc.code}: {exc.message}\n{details}".rstrip()) from exc

    def _export(self, *, path: str, source: str, **_):
        path = Path(path)
        files = selectors.bundle_export(previous_header=bundle.previous_header(path), source=source)
        bundle.write(path, files)
        self.stdout.write(f"Exported {len(files)} files to {path}.")

    def _plan(self, *, path: str, as_json: bool, **_):
        plan = selectors.bundle_plan(files=bundle.read(Path(path)))
        text = json.dumps(plan.as_dict(), indent=2) + "\n" if as_json else render(plan)
        self.stdout.write(text, ending="")
        # Objects a bundle never removes (units, roles, templates) are shown, not a change.
        sys.exit(1 if not plan.valid else (2 if plan.to_apply(prune=True) else 0))

    def _apply(self, *, path: str, user: str, yes: bool, prune: bool, expect_live, **_):
        by = get_user_model().objects.filter(username=user, is_active=True).first()
        if by is None:
            raise CommandError(f"No active user {user!r}.")
        files = bundle.read(Path(path))
        plan = selectors.bundle_plan(files=files)
        self.stdout.write(render(plan, prune=prune), ending="")
        if not plan.valid:
            sys.exit(1)
        if not plan.to_apply(prune=prune):
            return
        if not yes and input("Apply this plan? Only 'yes' applies: ").strip() != "yes":
            raise CommandError("Not applied.")
        applied = services.governance_apply(
            files=files, by=by, prune=prune, expect_live=expect_live or plan.live_digest
        )
        self.stdout.write(f"Applied {len(applied.changes)} change(s).")
