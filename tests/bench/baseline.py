"""The baseline the gate's throughput is compared with: agent-token authentication and one
INSERT, nothing else. Mounted only by the bench's urlconf (``tests.bench.urls``)."""

import uuid

from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.authentication import AgentTokenAuthentication
from autonomy.models import ConnectorCall


class BaselineView(APIView):
    """POST {"operation_id": <pk>} → one ConnectorCall row with a fresh key, 201."""

    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request):
        call = ConnectorCall.objects.create(
            idempotency_key=uuid.uuid4().hex,
            operation_id=int(request.data["operation_id"]),
        )
        return Response({"id": call.pk}, status=status.HTTP_201_CREATED)
