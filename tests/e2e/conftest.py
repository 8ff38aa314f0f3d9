"""Browser tests share the test IdP and headless Chromium fixtures."""

from tests.oidc_fixtures import browser_page, oidc_provider, oidc_settings  # noqa: F401
