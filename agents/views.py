from django.shortcuts import render


def signin_refused(request):
    """Where the IdP flow lands when the person has no portal role (or the flow failed)."""
    return render(request, "portal/signin_refused.html", status=403)
