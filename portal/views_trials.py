"""Log-only trials' pages: every trial and a form to start one (``/policies/trials/``), and one
trial's difference from the live policies with its Stop and Promote buttons
(``/policies/trials/<id>/``).

Reads come from ``autonomy.policy.trial_selectors``; the buttons call
``autonomy.policy.trials``, whose services refuse anyone ``may_change_policy`` refuses.
People who read policies (auditors among them) read trials.
"""

from functools import wraps

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from autonomy.errors import DomainError
from autonomy.models import PolicyTrial
from autonomy.policy import trial_selectors as selectors
from autonomy.policy import trials as services
from autonomy.policy.services import may_change_policy
from portal.views_policies import reader_required

REPLACES_ALL = "all"


def changer_required(view):
    @wraps(view)
    @reader_required
    @require_POST
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_change_policy(user=request.user):
            raise PermissionDenied("Only people who may change policies run trials.")
        return view(request, *args, **kwargs)

    return wrapped


class TrialForm(forms.Form):
    name = forms.CharField(max_length=services.NAME_MAX)
    text = forms.CharField(
        label="Draft (Cedar)", widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"})
    )
    replaces = forms.ChoiceField(
        required=False,
        help_text="Leave empty to try it as a new policy beside the enabled ones.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.policies = {str(p.pk): p for p in selectors.policy_choices()}
        self.fields["replaces"].choices = [
            ("", "nothing: a new policy"),
            *((pk, f"policy {p.name}") for pk, p in self.policies.items()),
            (REPLACES_ALL, "every enabled policy (a whole set)"),
        ]


def _start(form: TrialForm, by) -> PolicyTrial:
    data = form.cleaned_data
    if data["replaces"] == REPLACES_ALL:
        drafts = [{"name": data["name"], "text": data["text"]}]
        return services.trial_start(name=data["name"], drafts=drafts, by=by)
    return services.trial_start(
        name=data["name"],
        text=data["text"],
        replaces=form.policies.get(data["replaces"] or ""),
        by=by,
    )


def _list(request: HttpRequest, form: TrialForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "portal/trials/list.html",
        {
            "trials": list(selectors.trial_list()),
            "form": form,
            "may_change": may_change_policy(user=request.user),
        },
        status=status,
    )


@reader_required
@require_GET
@never_cache
def trial_list(request: HttpRequest) -> HttpResponse:
    return _list(request, TrialForm())


@changer_required
def trial_start(request: HttpRequest) -> HttpResponse:
    form = TrialForm(request.POST)
    if form.is_valid():
        try:
            trial = _start(form, request.user)
        except DomainError as exc:
            for field, errors in exc.details.get("fields", {}).items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
            if not form.errors:
                form.add_error(None, exc.message)
        else:
            messages.success(request, f"Trial {trial.name!r} runs log-only from now on.")
            return redirect(trial)
    return _list(request, form, status=400)


def _trial(trial_id: int) -> PolicyTrial:
    trial = selectors.trial_by_id(trial_id=trial_id)
    if trial is None:
        raise Http404("No such trial.")
    return trial


@reader_required
@require_GET
@never_cache
def trial_page(request: HttpRequest, trial_id: int) -> HttpResponse:
    trial = _trial(trial_id)
    return render(
        request,
        "portal/trials/detail.html",
        {
            "trial": trial,
            "summary": selectors.trial_summary(trial=trial),
            "may_change": may_change_policy(user=request.user),
        },
    )


@changer_required
def trial_stop(request: HttpRequest, trial_id: int) -> HttpResponse:
    trial = _trial(trial_id)
    try:
        services.trial_stop(trial=trial, by=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Trial stopped: nothing more is recorded.")
    return redirect(trial)


@changer_required
def trial_promote(request: HttpRequest, trial_id: int) -> HttpResponse:
    trial = _trial(trial_id)
    try:
        services.trial_promote(trial=trial, by=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Promoted: the draft decides from the next request on.")
    return redirect(trial)
