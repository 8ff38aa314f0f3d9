"""Workflow templates and runs in the admin.

Drafts are edited here; publishing, versioning, cloning, import/export and starting runs go
through ``workflows.authoring``, ``workflows.yaml_io`` and ``workflows.services``. A published
or archived version is shown read-only and every write to it is refused.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from agents.models import BusinessUnit
from autonomy.admin_view_only import ViewOnly
from autonomy.errors import DomainError
from workflows import authoring, services, yaml_io
from workflows.models import Run, RunEvent, Step, StepRun, Template, TemplateStatus

PORTAL_RUN_PATH = "/workflows/runs/{}/"


def _pretty(value) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2))


def _error_lines(exc: DomainError) -> list[str]:
    """A template error as one line per problem, naming the step and field."""
    return _lines(exc.details.get("errors") or []) or [exc.message]


def _lines(errors: list[dict]) -> list[str]:
    lines = []
    for error in errors:
        where = f"step “{error['step']}”" if error.get("step") else "template"
        lines.append(f"{where}, {error.get('field') or 'field'}: {error['message']}")
    return lines


# --- forms ----------------------------------------------------------------------------------


class KeyListField(forms.CharField):
    """A JSON list of keys, edited as ``a, b, c``."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [part.strip() for part in text.split(",") if part.strip()]


def _refuse_if_frozen(template: Template | None) -> None:
    if template is None or template.pk is None:
        return
    try:
        authoring.ensure_editable(template)
    except DomainError as exc:
        raise ValidationError(exc.message, code="template_immutable") from exc


class StepForm(forms.ModelForm):
    depends_on = KeyListField(
        required=False, help_text="Keys of the steps that must finish first, e.g. extract, match."
    )
    visible_context = KeyListField(
        required=False, help_text="Top-level context keys the assignee may read, comma-separated."
    )
    input_map = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "style": "font-family:monospace"}),
        help_text='Parameters from the context: {"amount": "$.invoice.amount"}; other values '
        "are literals.",
    )
    compensation_input_map = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "style": "font-family:monospace"}),
    )

    class Meta:
        model = Step
        fields = [f for f in authoring.COPIED_FIELDS if f != "position"]

    def clean_input_map(self):
        return self.cleaned_data.get("input_map") or {}

    def clean_compensation_input_map(self):
        return self.cleaned_data.get("compensation_input_map") or {}

    def clean(self):
        cleaned = super().clean()
        _refuse_if_frozen(getattr(self.instance, "template", None))
        if cleaned.get("assignee_role") and cleaned.get("assignee_agent"):
            self.add_error("assignee_agent", "Assign a role or an agent, not both.")
        return cleaned


class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ["key", "name", "description", "business_unit", "context_schema"]

    def clean_key(self):
        key = self.cleaned_data["key"]
        if self.instance.pk is None and Template.objects.filter(key=key).exists():
            raise ValidationError(
                f"A template {key!r} exists; open it and make a new version instead."
            )
        return key

    def clean(self):
        _refuse_if_frozen(self.instance)
        return super().clean()


class CloneForm(forms.Form):
    key = forms.SlugField(max_length=80, help_text="The new template's key, e.g. po-processing.")
    name = forms.CharField(max_length=160)
    business_unit = forms.ModelChoiceField(queryset=BusinessUnit.objects.order_by("name"))

    def clean_key(self):
        key = self.cleaned_data["key"]
        if Template.objects.filter(key=key).exists():
            raise ValidationError(f"A template {key!r} exists; pick another key.")
        return key


class ImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="A .yaml file exported from a template.")
    text = forms.CharField(
        required=False,
        strip=False,
        label="or paste YAML",
        widget=forms.Textarea(
            attrs={"rows": 20, "cols": 100, "spellcheck": "false", "style": "font-family:monospace"}
        ),
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None:
            if upload.size > yaml_io.MAX_YAML_BYTES:
                raise ValidationError(
                    f"The file is larger than {yaml_io.MAX_YAML_BYTES // 1024} KiB."
                )
            try:
                cleaned["yaml"] = upload.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError("The file is not UTF-8 text.") from exc
        elif (cleaned.get("text") or "").strip():
            cleaned["yaml"] = cleaned["text"]
        else:
            raise ValidationError("Choose a file or paste a YAML document.")
        return cleaned


class StartRunForm(forms.Form):
    context = forms.JSONField(
        initial=dict,
        widget=forms.Textarea(
            attrs={"rows": 12, "cols": 80, "spellcheck": "false", "style": "font-family:monospace"}
        ),
        help_text="The run's starting context, a JSON object.",
    )

    def clean_context(self):
        context = self.cleaned_data["context"]
        if not isinstance(context, dict):
            raise ValidationError("The context must be a JSON object.")
        return context


# --- templates ------------------------------------------------------------------------------


class StepInline(admin.StackedInline):
    model = Step
    form = StepForm
    extra = 0
    autocomplete_fields = [
        "operation",
        "assignee_role",
        "assignee_agent",
        "escalate_to_agent",
        "escalate_to_role",
        "compensation_operation",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("key", "name", "kind"),
                    ("operation", "assignee_role", "assignee_agent"),
                    "depends_on",
                    "instructions",
                ]
            },
        ),
        ("Data", {"fields": ["input_map", "output_key", "visible_context", "run_when"]}),
        ("Approval", {"fields": [("approval", "approval_when")]}),
        (
            "Failure",
            {
                "classes": ["collapse"],
                "fields": [
                    ("timeout_seconds", "max_retries", "retry_backoff_seconds"),
                    ("escalate_to_agent", "escalate_to_role", "escalate_to_human"),
                    "compensation_operation",
                    "compensation_input_map",
                ],
            },
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related(
                "operation__connector",
                "compensation_operation__connector",
                "assignee_role__group",
                "assignee_agent",
                "escalate_to_agent",
                "escalate_to_role__group",
            )
        )

    @staticmethod
    def _draft(obj) -> bool:
        return obj is None or obj.status == TemplateStatus.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._draft(obj) and super().has_delete_permission(request, obj)


@admin.action(description="Publish selected drafts", permissions=["change"])
def publish_selected(modeladmin, request, queryset):
    for template in queryset:
        modeladmin.publish(request, template)


@admin.action(description="Make a new draft version of selected", permissions=["add"])
def new_version_selected(modeladmin, request, queryset):
    for template in queryset:
        draft = authoring.template_new_version(template=template, by=request.user)
        modeladmin.message_user(request, f"Made {draft} (draft) from {template}.", messages.SUCCESS)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    inlines = [StepInline]
    list_display = [
        "key",
        "version",
        "name",
        "status",
        "business_unit",
        "origin_label",
        "runs_count",
        "published_at",
    ]
    list_display_links = ["key", "version"]
    list_filter = ["status", "business_unit"]
    search_fields = ["key", "name", "description"]
    actions = [publish_selected, new_version_selected]
    show_full_result_count = False
    always_readonly = [
        "version",
        "status",
        "origin",
        "created_by",
        "created_at",
        "published_at",
        "runs_link",
        "problems",
    ]
    fieldsets = [
        (None, {"fields": ["key", "name", "description", "business_unit"]}),
        ("Version", {"fields": ["version", "status", "origin", "published_at", "runs_link"]}),
        ("Checks", {"fields": ["problems"]}),
        ("Runs' context", {"classes": ["collapse"], "fields": ["context_schema"]}),
        ("History", {"classes": ["collapse"], "fields": ["created_by", "created_at"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("business_unit", "origin", "created_by")
            .annotate(runs_count=Count("runs"))
        )

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": ["key", "name", "description", "business_unit"]}),
                ("Runs' context", {"fields": ["context_schema"]}),
            ]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if obj.status != TemplateStatus.DRAFT:
            return [*TemplateForm.Meta.fields, *self.always_readonly]
        return ["key", *self.always_readonly]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.status != TemplateStatus.DRAFT:
            return False  # a published version never changes; make a new version
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != TemplateStatus.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.display(description="Origin", ordering="origin__key")
    def origin_label(self, obj):
        return f"{obj.origin.key} v{obj.origin.version}" if obj.origin_id else ""

    @admin.display(description="Runs", ordering="runs_count")
    def runs_count(self, obj):
        return obj.runs_count

    @admin.display(description="Runs")
    def runs_link(self, obj):
        url = reverse("admin:workflows_run_changelist") + f"?template__id__exact={obj.pk}"
        return format_html('<a href="{}">{} run(s)</a>', url, obj.runs.count())

    @admin.display(description="Problems to fix before publishing")
    def problems(self, obj):
        if obj.pk is None or obj.status != TemplateStatus.DRAFT:
            return "—"
        errors = authoring.template_validate(template=obj)
        if not errors:
            return "None: this draft can be published."
        items = format_html_join("", "<li>{}</li>", ((line,) for line in _lines(errors)))
        return format_html("<ul>{}</ul>", items)

    # --- the use cases ----------------------------------------------------------------------

    def publish(self, request, template: Template) -> bool:
        try:
            authoring.template_publish(template=template, by=request.user)
        except DomainError as exc:
            self.message_user(request, f"{template} was not published:", messages.ERROR)
            for line in _error_lines(exc):
                self.message_user(request, line, messages.ERROR)
            return False
        self.message_user(
            request,
            f"Published {template}. Runs started from now on use this version.",
            messages.SUCCESS,
        )
        return True

    def get_urls(self):
        view = self.admin_site.admin_view
        urls = [path("import/", view(self.import_view), name="workflows_template_import")]
        for verb, handler in [
            ("publish", self.publish_view),
            ("new-version", self.new_version_view),
            ("clone", self.clone_view),
            ("export", self.export_view),
            ("start-run", self.start_run_view),
        ]:
            name = f"workflows_template_{verb.replace('-', '_')}"
            urls.append(path(f"<path:object_id>/{verb}/", view(handler), name=name))
        return urls + super().get_urls()

    def _template(self, request, object_id) -> Template:
        template = self.get_object(request, unquote(object_id))
        if template is None:
            raise Http404
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        return template

    def _change_url(self, template: Template) -> str:
        return reverse("admin:workflows_template_change", args=[template.pk])

    def _page(self, request, template, *, title: str, form, submit: str, intro: str = ""):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": template,
            "title": title,
            "form": form,
            "submit": submit,
            "intro": intro,
        }
        return TemplateResponse(request, "admin/workflows/template/form_page.html", context)

    def publish_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = self._template(request, object_id)
        if not self.has_change_permission(request):
            raise PermissionDenied
        self.publish(request, template)
        return HttpResponseRedirect(self._change_url(template))

    def new_version_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        template = self._template(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        draft = authoring.template_new_version(template=template, by=request.user)
        self.message_user(request, f"Made {draft} (draft) from {template}.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(draft))

    def clone_view(self, request, object_id):
        template = self._template(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {"name": f"{template.name} (copy)", "key": f"{template.key}-copy"}
        form = CloneForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                clone = authoring.template_clone(
                    template=template, by=request.user, **form.cleaned_data
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Cloned {template} as {clone} (draft) for {clone.business_unit}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._change_url(clone))
        intro = "The clone is a draft, version 1, linked to this template as its origin."
        return self._page(
            request, template, title=f"Clone {template}", form=form, submit="Clone", intro=intro
        )

    def export_view(self, request, object_id):
        template = self._template(request, object_id)
        response = HttpResponse(
            yaml_io.template_export_yaml(template=template),
            content_type="application/yaml; charset=utf-8",
        )
        filename = f"{template.key}-v{template.version}.yaml"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                template = yaml_io.template_import_yaml(
                    text=form.cleaned_data["yaml"], by=request.user
                )
            except DomainError as exc:
                for line in _error_lines(exc):
                    form.add_error(None, line)
            else:
                self.message_user(request, f"Imported {template} as a draft.", messages.SUCCESS)
                return HttpResponseRedirect(self._change_url(template))
        intro = (
            "A YAML document as Export YAML writes it. It becomes a draft: the next version of "
            "its key, or version 1 of a new one."
        )
        return self._page(
            request, None, title="Import a template", form=form, submit="Import", intro=intro
        )

    def start_run_view(self, request, object_id):
        template = self._template(request, object_id)
        if not request.user.has_perm("workflows.add_run"):
            raise PermissionDenied
        form = StartRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                run = services.run_start(
                    template=template, context=form.cleaned_data["context"], by=request.user
                )
            except DomainError as exc:
                form.add_error("context", exc.message)
            else:
                self.message_user(
                    request,
                    format_html(
                        'Started run {}. <a href="{}">Follow it in the portal</a>.',
                        str(run.pk)[:8],
                        PORTAL_RUN_PATH.format(run.pk),
                    ),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:workflows_run_change", args=[run.pk]))
        intro = ""
        if template.context_schema:
            intro = "The context must fit this JSON Schema: " + json.dumps(template.context_schema)
        return self._page(
            request,
            template,
            title=f"Start a run of {template}",
            form=form,
            submit="Start run",
            intro=intro,
        )


# --- runs -----------------------------------------------------------------------------------


class _ReadOnlyInline(ViewOnly, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class StepRunInline(_ReadOnlyInline):
    model = StepRun
    fields = ["step", "status", "assignee", "attempt", "action", "started_at", "finished_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related(
                "step__template", "assignee", "action__operation__connector", "action__agent"
            )
        )


class RunEventInline(_ReadOnlyInline):
    model = RunEvent
    fields = ["created_at", "kind", "step_key", "actor", "message"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("step_run__step")

    @admin.display(description="Step")
    def step_key(self, obj):
        return obj.step_run.step.key if obj.step_run_id else ""


@admin.register(Run)
class RunAdmin(ViewOnly, admin.ModelAdmin):
    # Runs start from a published template ("Start run" on its page), never here.
    list_display = [
        "short_id",
        "template",
        "status",
        "started_by",
        "created_at",
        "finished_at",
        "portal_link",
    ]
    list_filter = ["status", "template__key", "created_at"]
    list_select_related = ["template"]
    search_fields = ["=id", "started_by", "template__key", "template__name"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [StepRunInline, RunEventInline]
    exclude = ["context"]
    readonly_fields = [
        "id", "template", "status", "started_by", "idempotency_key", "created_at", "finished_at",
        "portal_link", "context_view",
    ]  # fmt: skip

    @admin.display(description="Run", ordering="created_at")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="Portal")
    def portal_link(self, obj):
        return format_html('<a href="{}">Open</a>', PORTAL_RUN_PATH.format(obj.pk))

    @admin.display(description="Context")
    def context_view(self, obj):
        return _pretty(obj.context)
