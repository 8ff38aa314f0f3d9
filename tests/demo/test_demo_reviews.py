"""The demo's access reviews (``demo.reviews``): the seed opens the quarter's review of Finance
and Procurement with something of every kind to answer, once."""

import pytest
from django.core.management import call_command

from demo.reviews import seed_reviews
from reviews.models import AccessReview, ItemKind, ReviewStatus

pytestmark = pytest.mark.django_db


def test_the_demo_opens_reviews_with_every_kind_of_item_once(capsys):
    call_command("seed_demo", "--agents", "120")
    assert "2 access reviews" in capsys.readouterr().out
    finance = AccessReview.objects.get(business_unit__slug="finance")
    assert finance.status == ReviewStatus.OPEN
    kinds = set(finance.items.values_list("kind", flat=True))
    assert kinds == set(ItemKind.values)
    held = finance.items.filter(kind=ItemKind.OVER_PRIVILEGED, evidence__holder="agent")
    assert held.exists()  # a grant of the agent's own, not only its role's
    assert seed_reviews() == 0
    assert AccessReview.objects.count() == 2
