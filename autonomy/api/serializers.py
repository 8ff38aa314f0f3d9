from rest_framework import serializers

from autonomy.errors import ErrorCode


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently dropping them.

    An agent that misspells ``risk_tier`` must hear about it, not get a default.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known)
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: serializers.ErrorDetail(
                            "Unknown field.", code=ErrorCode.UNKNOWN_FIELD
                        )
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass
