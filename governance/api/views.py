"""/api/v1/governance/: the whole configuration as a bundle, and plans and applies of
uploaded bundles, for IT admins and policy owners (``may_manage_governance``) and for the
IdP or CMDB that acts as one of them. Thin: ``governance.selectors`` and ``services``."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.permissions import IsPerson
from autonomy.api.serializers import StrictSerializer
from governance import bundle, selectors, services


class MayManageGovernance(permissions.BasePermission):
    def has_permission(self, request, view):
        if not selectors.may_manage_governance(user=request.user):
            raise PermissionDenied("Only IT admins and policy owners manage governance bundles.")
        return True


class BundleChangeSerializer(serializers.Serializer):
    section = serializers.CharField()
    op = serializers.ChoiceField(choices=["add", "change", "remove"])
    key = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField(), help_text="fields, a diff")
    errors = serializers.ListField(child=serializers.CharField())
    note = serializers.CharField()
    applies = serializers.BooleanField(help_text="false: shown, never applied by a bundle")


class PlanSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    live_digest = serializers.CharField(help_text="pass as expect_live to apply this plan")
    bundle_digest = serializers.CharField()
    sections = serializers.ListField(child=serializers.CharField())
    counts = serializers.DictField(child=serializers.IntegerField())
    changes = BundleChangeSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())


class BundleUploadSerializer(StrictSerializer):
    bundle = serializers.FileField(help_text="a .zip (or .tar.gz) of a bundle directory")


class ApplySerializer(BundleUploadSerializer):
    expect_live = serializers.CharField(
        max_length=80, help_text="the live_digest of the plan that was reviewed"
    )
    prune = serializers.BooleanField(required=False, default=False)


class AppliedSerializer(serializers.Serializer):
    applied = BundleChangeSerializer(many=True)
    plan = PlanSerializer()


def _files(upload) -> dict[str, str]:
    if upload.size > bundle.MAX_BYTES:
        raise bundle.invalid(f"A bundle holds at most {bundle.MAX_BYTES // 2**20} MiB.")
    data = upload.read()
    return bundle.read_zip(data) if data[:2] == b"PK" else bundle.read_tar(data)


class BundleView(APIView):
    permission_classes = [IsPerson, MayManageGovernance]

    @extend_schema(
        responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY)},
        description="Live governance as a bundle (zip): the files `manage.py governance "
        "export` writes.",
    )
    def get(self, request):
        files = selectors.bundle_export(source=f"api:{request.get_host()}")
        response = HttpResponse(bundle.zip_bytes(files), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="governance.zip"'
        return response


class PlanView(APIView):
    permission_classes = [IsPerson, MayManageGovernance]
    parser_classes = [MultiPartParser]

    @extend_schema(request=BundleUploadSerializer, responses=PlanSerializer)
    def post(self, request):
        data = BundleUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = selectors.bundle_plan(files=_files(data.validated_data["bundle"]))
        return Response(plan.as_dict())


class ApplyView(APIView):
    permission_classes = [IsPerson, MayManageGovernance]
    parser_classes = [MultiPartParser]

    @extend_schema(request=ApplySerializer, responses=AppliedSerializer)
    def post(self, request):
        data = ApplySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        applied = services.governance_apply(
            files=_files(data.validated_data["bundle"]),
            by=request.user,
            prune=data.validated_data["prune"],
            expect_live=data.validated_data["expect_live"],
        )
        return Response(
            {
                "applied": [change.as_dict() for change in applied.changes],
                "plan": applied.plan.as_dict(),
            }
        )
