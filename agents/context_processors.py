from agents.oidc import oidc_enabled


def sign_in(request):
    """Lets the login page offer single sign-on when an IdP is configured."""
    return {"oidc_enabled": oidc_enabled()}
