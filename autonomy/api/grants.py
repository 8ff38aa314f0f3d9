"""/api/v1/grants/: who may call which operation, for IdP/CMDB-driven registries. A grant is
named by its holder (``role:<slug>``, ``agent:<slug>``) and target (an operation key, or
``<connector>.*``). A new grant waits for approval like the portal's
(``agents.services.grant_request``); revoking is immediate (``autonomy.grants.revoke_grant``).
IT admins (``autonomy.change_operation``) write; the operations' viewers read."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agents import services as agent_services
from agents.api.permissions import IsPerson
from autonomy import grants
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode


class GrantSerializer(serializers.Serializer):
    id = serializers.CharField(read_only=True, help_text="r<n>: a role's grant; a<n>: an agent's")
    to = serializers.CharField(max_length=120, help_text="role:<slug> or agent:<slug>")
    target = serializers.CharField(
        max_length=200, help_text="an operation key (erp.pay-invoice) or a connector (erp.*)"
    )


class GrantWriteSerializer(StrictSerializer, GrantSerializer):
    pass


class GrantRequestedSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="pending: waits for the unit owner and security")
    change = serializers.UUIDField(help_text="the registry change an approval request decides")
    to = serializers.CharField()
    target = serializers.CharField()


class GrantPermissions(permissions.BasePermission):
    def has_permission(self, request, view):
        needed = (
            "autonomy.view_operation"
            if request.method in permissions.SAFE_METHODS
            else "autonomy.change_operation"
        )
        if not request.user.has_perm(needed):
            raise PermissionDenied(f"You need the {needed} permission.")
        return True


class GrantViewSet(viewsets.GenericViewSet):
    """Grants held by roles and agents, paginated like every list (``grants_table`` rows)."""

    permission_classes = [IsPerson, GrantPermissions]
    filter_backends = []  # rows, not a queryset: ``to`` filters them
    lookup_value_regex = "[ar][0-9]{1,18}"
    serializer_class = GrantSerializer

    @extend_schema(
        parameters=[OpenApiParameter("to", str, description="only this holder's grants")],
        responses=GrantSerializer(many=True),
    )
    def list(self, request):
        rows = grants.grants_table()
        holder = request.query_params.get("to")
        if holder:
            rows = [row for row in rows if row["to"] == holder]
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(GrantSerializer(page, many=True).data)

    @extend_schema(
        request=GrantWriteSerializer,
        responses={200: GrantSerializer, 202: GrantRequestedSerializer},
        description="Widening access waits for approval (202, the registry change); a grant "
        "already held answers 200.",
    )
    def create(self, request):
        data = GrantWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        to, target = data.validated_data["to"], data.validated_data["target"]
        holder, grantee = grants.holder_named(to), grants.target_named(target)
        unknown = {"to": holder is None, "target": grantee is None}
        if any(unknown.values()):
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "No such holder or target.",
                {
                    "fields": {
                        f: [f"unknown: {data.validated_data[f]}"] for f, u in unknown.items() if u
                    }
                },
            )
        change = agent_services.grant_request(target=grantee, to=holder, by=request.user)
        if change is not None:  # widening access waits for the unit owner and security
            return Response(
                {"status": change.status, "change": str(change.pk), "to": to, "target": target},
                status=status.HTTP_202_ACCEPTED,
            )
        row = next(r for r in grants.grants_table() if (r["to"], r["target"]) == (to, target))
        return Response(GrantSerializer(row).data, status=status.HTTP_200_OK)

    @extend_schema(
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH, description="r<n>|a<n>")],
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        row = grants.grant_row(pk)
        if row is None:
            raise Http404
        holder, target = grants.holder_named(row["to"]), grants.target_named(row["target"])
        grants.revoke_grant(target=target, to=holder, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
