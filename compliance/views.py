"""The compliance page: the control map with each control's evidence for a period, and the
evidence pack download (POST: building a pack is audited). Risk officers and auditors."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_POST

from compliance import periods, selectors, services
from compliance.evidence import pack_filename
from compliance.forms import PeriodForm
from compliance.models import Framework


def _require(request: HttpRequest) -> None:
    if not services.may_export_evidence(user=request.user):
        raise PermissionDenied("Only risk officers and auditors see compliance evidence.")


@login_required
def index(request: HttpRequest) -> HttpResponse:
    _require(request)
    form = PeriodForm(request.GET or None)
    period = form.cleaned_data["period"] if form.is_valid() else periods.current_quarter()
    framework = form.cleaned_data.get("framework") if form.is_bound and form.is_valid() else ""
    rows = selectors.controls_with_counts(
        start=period.start, end=period.end, framework=framework or None
    )
    return render(
        request,
        "compliance/index.html",
        {
            "form": form,
            "period": period,
            "framework": framework,
            "frameworks": Framework.choices,
            "quarters": periods.recent_quarters(),
            "controls": rows,
        },
        status=200 if not form.is_bound or form.is_valid() else 400,
    )


@login_required
@require_POST
def pack(request: HttpRequest) -> HttpResponse:
    _require(request)
    form = PeriodForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("; ".join(form.non_field_errors()) or "bad period")
    period = form.cleaned_data["period"]
    file, _ = services.evidence_pack_export(period=period, by=request.user)
    return FileResponse(
        file, as_attachment=True, filename=pack_filename(period), content_type="application/zip"
    )
