"""One-row writes with a statement built once, for the hot paths (the gate, workflow steps).

On those paths the ORM's ``save()`` and ``create()`` machinery cost several times the
statement itself (measured: the gate's action insert 4x with ``make bench``; a step run's
update ~0.4 ms against ~0.1 ms). These build each statement once per database, model and
field set, with named parameters (Django's SQLite backend rewrites positional ones with a
regular expression on every call), and prepare values exactly as ``save()`` does
(``pre_save``: ``auto_now`` stamps; ``get_db_prep_save``). They send no signals: use them
only for models no signal receiver listens to.
"""

from django.db import DatabaseError, transaction

_statements: dict[tuple, tuple[str, list]] = {}


def _statement(key: tuple, build) -> tuple[str, list]:
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = build()
    return found


def insert(instance) -> None:
    """``instance.save()`` of a new row: every concrete field but a database-generated key
    (which is not read back). A unique clash raises IntegrityError as ``create()`` would."""
    model, connection = type(instance), transaction.get_connection()
    meta = model._meta

    def build():
        fields = [f for f in meta.concrete_fields if not f.db_returning]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        values = ", ".join(f"%({f.attname})s" for f in fields)
        return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({values})", fields

    sql, fields = _statement((connection.alias, model), build)
    values = {f.attname: f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields}
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
    instance._state.adding, instance._state.db = False, connection.alias


def update(instance, names: list[str]) -> None:
    """``instance.save(update_fields=names)``; raises as that does when the row is gone."""
    model, connection = type(instance), transaction.get_connection()
    meta = model._meta

    def build():
        fields = [meta.get_field(name) for name in names]
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(f.column)} = %({f.attname})s" for f in fields)
        table, pk = quote(meta.db_table), quote(meta.pk.column)
        return f"UPDATE {table} SET {sets} WHERE {pk} = %(pk__)s", fields

    sql, fields = _statement((connection.alias, model, tuple(names)), build)
    values = {
        f.attname: f.get_db_prep_save(f.pre_save(instance, False), connection) for f in fields
    }
    values["pk__"] = meta.pk.get_db_prep_value(instance.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if cursor.rowcount != 1:
            raise DatabaseError(f"{model.__name__} {instance.pk} is gone: nothing was updated.")
