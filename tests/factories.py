import factory
from django.contrib.auth import get_user_model

from agents import services
from agents.models import Agent, BusinessUnit, Role

User = get_user_model()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")


class BusinessUnitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BusinessUnit
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Unit {n}")
    slug = factory.Sequence(lambda n: f"unit-{n}")


def make_role(slug: str = "clerk", name: str | None = None) -> Role:
    existing = Role.objects.filter(slug=slug).first()
    return existing or services.role_create(name=name or slug.title(), slug=slug)


def make_agent(*, slug: str, owner=None, business_unit=None, role=None, **kwargs) -> Agent:
    """Agents are always made through the registry service, as in production."""
    return services.agent_register(
        approved=True,
        name=slug.replace("-", " ").title(),
        slug=slug,
        owner=owner or UserFactory(),
        business_unit=business_unit or BusinessUnitFactory(),
        role=role or make_role(),
        **kwargs,
    )
