"""Templates as YAML documents: export a version, import a draft.

The document is ``authoring.template_to_dict``'s shape. Import parses with a safe loader that
also refuses aliases (no "billion laughs"), caps the size, and reports a syntax error with its
line and column, in the same ``{"step", "field", "message"}`` shape as validation errors.
"""

import yaml
from django.db import transaction

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from workflows import authoring
from workflows.models import Template

MAX_YAML_BYTES = 256 * 1024


class NoAliasLoader(yaml.SafeLoader):
    """Safe loading without anchors/aliases (no "billion laughs"): a template never needs them,
    nor does a governance bundle's file."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a template", mark
            )
        return super().compose_node(parent, index)


def _invalid(message: str, **details) -> DomainError:
    errors = [{"step": "", "field": "yaml", "message": message}]
    return DomainError(ErrorCode.TEMPLATE_INVALID, message, {"errors": errors, **details})


def _parse(text: str) -> dict:
    if len(text.encode()) > MAX_YAML_BYTES:
        raise _invalid(f"The YAML document is larger than {MAX_YAML_BYTES // 1024} KiB.")
    try:
        data = yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        where = f" at line {line}, column {column}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise _invalid(f"YAML syntax error{where}: {problem}.", line=line, column=column) from exc
    except yaml.YAMLError as exc:
        raise _invalid(f"YAML syntax error: {exc}.") from exc
    if not isinstance(data, dict):
        raise _invalid("The YAML document must be a mapping with a key, a name and steps.")
    return data


def template_yaml_parse(*, text: str) -> dict:
    """A YAML document as the template dict it holds, or ``template_invalid`` saying where it
    is broken; nothing is created (governance bundles compare templates with it)."""
    return _parse(text)


def template_export_yaml(*, template: Template) -> str:
    """One template version as a YAML document (references by key and slug)."""
    return yaml.safe_dump(
        authoring.template_to_dict(template=template),
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )


def template_import_yaml(*, text: str, by=None) -> Template:
    """A new draft from a YAML document: the next version of its key, or version 1."""
    data = _parse(text)
    with transaction.atomic():
        template = authoring.template_from_dict(data=data, by=by)
        audit.append(
            kind="template_imported",
            actor=getattr(by, "username", ""),
            payload={"template": template.key, "version": template.version},
        )
    return template
