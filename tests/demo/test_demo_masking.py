"""The demo's sensitive declarations: valid, idempotent, and masked for the demo approvers."""

import pytest
from django.contrib.auth.models import Group

from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from autonomy import masking
from autonomy.models import Connector, Operation
from demo.masking import DECLARATIONS, seed_masking
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_every_demo_declaration_is_valid():
    for params, results in DECLARATIONS.values():
        masking.validate_declaration(params)
        masking.validate_declaration(results)


def test_seeding_declares_once_and_an_approver_sees_the_masks():
    crm = Connector.objects.create(slug="crm", name="CRM")
    contact = Operation.objects.create(connector=crm, slug="update-contact", name="Update")
    assert seed_masking() == 1
    assert seed_masking() == 0
    contact.refresh_from_db()
    assert contact.sensitive_params == {"email": "pii", "phone": "pii"}
    portal_roles_sync()
    ava = UserFactory(username="ava.approver", is_staff=True)
    ava.groups.add(Group.objects.get(name=group_name(PortalRole.APPROVER)))
    shown = masking.mask(contact, {"contact_id": "C-1", "email": "a@b.c"}, viewer=ava)
    assert shown == {"contact_id": "C-1", "email": "•••• (pii)"}
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    assert masking.mask(contact, {"email": "a@b.c"}, viewer=admin) == {"email": "a@b.c"}
