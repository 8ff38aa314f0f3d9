from rest_framework import serializers

from autonomy import masking
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


class MaskedJSONField(serializers.JSONField):
    """An action's parameters (or, with ``result``, its result) as the request's user may see
    them (``autonomy.masking``). ``source`` names the action (``"*"`` when the serialized
    object is the action); no request in the context means no viewer: masked."""

    def __init__(self, *, result: bool = False, **kwargs):
        self.result = result
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, action):
        if action is None:
            return None
        viewer = getattr(self.context.get("request"), "user", None)
        if self.result:
            return masking.outcome_for(action, viewer=viewer)
        return masking.params_for(action, viewer=viewer)
