"""Personal API tokens in the admin: staff create their own (a superuser, anyone's), see the
secret once, and revoke. Writes go through ``agents.user_tokens``."""

from django import forms
from django.contrib import admin, messages

from agents import user_tokens
from agents.models import PersonalToken, PersonalTokenScope
from autonomy.errors import DomainError


class PersonalTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=PersonalTokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[PersonalTokenScope.READ],
    )
    expires_at = forms.DateTimeField(
        required=False, help_text="Empty: in 90 days. At most a year from now."
    )

    class Meta:
        model = PersonalToken
        fields = ["user", "name", "scopes", "expires_at"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("user") is not None:
            try:
                user_tokens.user_token_terms(
                    user=cleaned["user"],
                    scopes=cleaned.get("scopes"),
                    expires_at=cleaned.get("expires_at"),
                )
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.action(description="Revoke selected tokens")
def revoke(modeladmin, request, queryset):
    for token in queryset:
        user_tokens.user_token_revoke(token=token)
    modeladmin.message_user(request, f"{queryset.count()} token(s) revoked.", messages.SUCCESS)


@admin.register(PersonalToken)
class PersonalTokenAdmin(admin.ModelAdmin):
    form = PersonalTokenForm
    list_display = ["name", "user", "prefix", "scopes", "state_label", "expires_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    actions = [revoke]
    readonly_fields = ["user", "name", "prefix", "scopes", "state_label", "created_at",
                       "created_by", "expires_at", "last_used_at", "revoked_at"]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else self.form.Meta.fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is None and not request.user.is_superuser:
            form.base_fields["user"].queryset = form.base_fields["user"].queryset.filter(
                pk=request.user.pk
            )
            form.base_fields["user"].initial = request.user.pk
        return form

    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    has_view_permission = has_add_permission = has_change_permission = (
        lambda self, request, obj=None: self.has_module_permission(request)
    )

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row is the record of what the token did

    @admin.display(description="State")
    def state_label(self, obj):
        return obj.state()

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        issued, secret = user_tokens.user_token_issue(
            user=data["user"], by=request.user, name=data["name"],
            scopes=data["scopes"], expires_at=data.get("expires_at"),
        )  # fmt: skip
        obj.pk, obj.prefix = issued.pk, issued.prefix
        self.message_user(
            request,
            f"Token for {issued.user}: {secret} — copy it now, it is never shown again.",
            messages.WARNING,
        )
