"""The "Clone permission model" page (``/permission-models/clone/``): pick a role, the unit
it works in and the unit to clone it to; the page shows the diff ``permission_model_plan``
computes (writing nothing), and "Save" posts the plan's hash so that
``permission_model_clone`` applies exactly what was shown, or refuses a plan gone stale.
``agents.blueprints.may_manage`` is the one rule of who may (IT admins)."""

import difflib

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from agents import blueprints
from agents.models import BusinessUnit, Role
from autonomy.errors import DomainError


class CloneForm(forms.Form):
    role = forms.ModelChoiceField(queryset=Role.objects.select_related("group"))
    from_unit = forms.ModelChoiceField(queryset=BusinessUnit.objects.all(), label="From unit")
    to_unit = forms.ModelChoiceField(queryset=BusinessUnit.objects.all(), label="To unit")
    new_role = forms.SlugField(max_length=80, label="New role (slug)")
    plan_hash = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)


def _lines(policy: dict) -> list[tuple[str, str]]:
    """The policy's text as diff lines against the clone saved before (all added if none)."""
    before = (policy["before"] or "").splitlines() if policy["before"] is not None else []
    rows = []
    for line in difflib.ndiff(before, policy["text"].splitlines()):
        if line.startswith("? "):
            continue
        kind = {"+ ": "add", "- ": "del"}.get(line[:2], "same")
        rows.append((kind, line[2:]))
    return rows


def _args(form: CloneForm) -> dict:
    data = form.cleaned_data
    return {
        "role": data["role"],
        "from_unit": data["from_unit"],
        "to_unit": data["to_unit"],
        "new_role_slug": data["new_role"],
    }


def _fresh_plan(form: CloneForm) -> dict | None:
    """After a refused save: the plan as it is now, to review again (None if none can be)."""
    try:
        return blueprints.permission_model_plan(**_args(form))
    except DomainError:
        return None


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def clone_page(request: HttpRequest) -> HttpResponse:
    if not blueprints.may_manage(user=request.user):
        raise PermissionDenied("Cloning a permission model is for IT admins.")
    source = request.POST if request.method == "POST" else request.GET
    form = CloneForm(source or None)
    plan, status, error = None, 200, None
    if form.is_bound and form.is_valid():
        try:
            if request.method == "POST":
                plan = blueprints.permission_model_clone(
                    **_args(form), plan_hash=form.cleaned_data["plan_hash"], by=request.user
                )
                messages.success(
                    request,
                    f"Cloned {plan['role']} in {plan['from_unit']} to {plan['new_role']} in "
                    f"{plan['to_unit']}."
                    + (
                        f" Its {len(plan['grants'])} new grant(s) wait for approval in the inbox."
                        if plan["grants"]
                        else ""
                    ),
                )
                query = {k: source.get(k) for k in ("role", "from_unit", "to_unit", "new_role")}
                return redirect(f"{reverse('permission-models:clone')}?{urlencode(query)}")
            plan = blueprints.permission_model_plan(**_args(form))
        except DomainError as exc:
            error, status = exc, exc.status_code
            plan = _fresh_plan(form) if request.method == "POST" else None
    elif form.is_bound:
        status = 400
    if plan is not None:
        for policy in plan["policies"]:
            policy["lines"] = _lines(policy)
        for threshold in plan["thresholds"]:
            threshold["label"] = threshold["field"].replace("_", " ").capitalize()
        picked = form.cleaned_data
        form = CloneForm(
            initial={
                **{k: picked[k].pk for k in ("role", "from_unit", "to_unit")},
                "new_role": picked["new_role"],
                "plan_hash": plan["hash"],
            }
        )
    context = {"form": form, "plan": plan, "error": error}
    return render(request, "portal/permission_model_clone.html", context, status=status)
