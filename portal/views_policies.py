"""Policy history pages: every policy (``/policies/``), one policy's versions
(``/policies/<id>/``) and one version with its diff and the rollback button
(``/policies/<id>/versions/<n>/``).

Reads come from ``autonomy.policy.selectors``; the button calls
``autonomy.policy.services.policy_rollback``, whose ``may_change_policy`` is the one rule of
who may change a policy. A deleted policy's history stays readable under its old id.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from agents.portal_roles import is_portal_person
from autonomy.errors import DomainError
from autonomy.models import Policy
from autonomy.policy import selectors, services

NOTE_MAX = 2000


def may_read(*, user) -> bool:
    """People of the portal who may view policies; agents never."""
    return is_portal_person(user) and user.has_perm("autonomy.view_policy")


def reader_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_read(user=request.user):
            raise PermissionDenied(
                "Policies, their history and trials are for portal people who may view policies."
            )
        return view(request, *args, **kwargs)

    return wrapped


@reader_required
@require_GET
@never_cache
def policy_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "portal/policies/list.html",
        {"policies": list(selectors.policy_list()), "deleted": list(selectors.deleted_policies())},
    )


@reader_required
@require_GET
@never_cache
def policy_history(request: HttpRequest, policy_id: int) -> HttpResponse:
    versions = list(selectors.policy_versions(policy_id))
    policy = Policy.objects.filter(pk=policy_id).first()
    if policy is None and not versions:
        raise Http404("No such policy.")
    return render(
        request,
        "portal/policies/history.html",
        {
            "policy": policy,
            "policy_id": policy_id,
            "name": policy.name if policy else versions[0].policy_name,
            "versions": versions,
            "may_change": policy is not None and services.may_change_policy(user=request.user),
        },
    )


def _field_changes(version, previous) -> list[tuple[str, str, str]]:
    """The fields besides the text that moved: (field, before, after)."""
    if previous is None:
        return []
    found = []
    for field, shown in (("policy_name", "name"), ("description", "description")):
        before, after = getattr(previous, field), getattr(version, field)
        if before != after:
            found.append((shown, before or "—", after or "—"))
    if previous.enabled != version.enabled:
        found.append(("enabled", _yes(previous.enabled), _yes(version.enabled)))
    return found


def _yes(value: bool) -> str:
    return "yes" if value else "no"


@reader_required
@require_GET
@never_cache
def policy_version_page(request: HttpRequest, policy_id: int, number: int) -> HttpResponse:
    version = selectors.policy_version(policy_id, number)
    if version is None:
        raise Http404("No such policy version.")
    previous = selectors.previous_version(version)
    policy = version.policy
    return render(
        request,
        "portal/policies/version.html",
        {
            "version": version,
            "previous": previous,
            "policy": policy,
            "diff": selectors.version_diff(version=version, against=previous),
            "field_changes": _field_changes(version, previous),
            "is_current": policy is not None and policy.version == version.number,
            "may_change": policy is not None and services.may_change_policy(user=request.user),
        },
    )


@reader_required
@require_POST
def policy_rollback(request: HttpRequest, policy_id: int, number: int) -> HttpResponse:
    if not services.may_change_policy(user=request.user):
        raise PermissionDenied("Only people allowed to change policies may roll one back.")
    policy = get_object_or_404(Policy, pk=policy_id)
    try:
        policy = services.policy_rollback(
            policy=policy,
            to_version=number,
            by=request.user,
            note=request.POST.get("note", "")[:NOTE_MAX],
        )
    except DomainError as exc:
        errors = exc.details.get("fields", {}).get("text", [])
        messages.error(request, " ".join([exc.message, *errors]))
        return redirect("policies:version", policy_id=policy_id, number=number)
    messages.success(request, f"Rolled back to version {number}: now version {policy.version}.")
    return redirect("policies:version", policy_id=policy_id, number=policy.version)
