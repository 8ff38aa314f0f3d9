"""One-row writes and one-key reads with statements built once, for the hot paths (the gate,
workflow steps).

On those paths the ORM's ``save()`` and ``create()`` machinery cost several times the
statement itself (measured: the gate's action insert 4x with ``make bench``; a step run's
update ~0.4 ms against ~0.1 ms). These build each statement once per database, model and
field set, with named parameters (Django's SQLite backend rewrites positional ones with a
regular expression on every call), and prepare values exactly as ``save()`` does
(``pre_save``: ``auto_now`` stamps; ``get_db_prep_save``). They send no signals: use them
only for models no signal receiver listens to. ``Select`` runs a queryset's own compiled
SQL again with another key, and builds its objects as the ORM does.
"""

import asyncio
import datetime
import re
import sqlite3
import threading
import uuid
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.db.models.base import ModelState
from django.db.models.fields.reverse_related import ForeignObjectRel
from django.db.models.query import get_related_populators
from django.db.models.signals import post_init, pre_init
from django.utils.connection import ConnectionProxy

_statements: dict[tuple, tuple[str, list]] = {}


# Django keeps each thread's connections in an asgiref ``Local`` whose every read raises and
# catches an AttributeError and, outside an event loop, a RuntimeError (and reading through
# ``django.db.connection`` one more AttributeError): ~40 reads a workflow step. In a thread
# without an event loop that Local is a plain ``threading.local``, read directly here.
_THREAD_CONNECTIONS = (
    connections._connections._storage
    if type(connections._connections).__name__ == "_ThreadCriticalLocal"
    and isinstance(connections._connections.__dict__.get("_storage"), threading.local)
    else None
)


def db(alias: str = DEFAULT_DB_ALIAS):
    """``connections[alias]`` (what ``transaction.get_connection`` returns): this thread's
    connection to ``alias``, without the asgiref ``Local``'s exceptions where it can.
    (``asyncio._get_running_loop``: the loop or None, where ``get_running_loop`` raises.)"""
    if _THREAD_CONNECTIONS is not None and asyncio._get_running_loop() is None:
        found = _THREAD_CONNECTIONS.__dict__.get(alias)
        if found is not None:
            return found
    return connections[alias]


class _Named(dict):
    """``sql % _Named()``: Django's SQLite conversion of named parameters (``%(name)s`` to
    ``:name``, ``%%`` to ``%``), done once per statement text."""

    def __missing__(self, name: str) -> str:
        return f":{name}"


class _Kept:
    """The cursor ``cursor()`` keeps for a connection, as a ``with`` block that leaves it
    open. A statement with named parameters goes straight to the driver's cursor, as
    Django's cursor wrapper sends it (the transaction checked, the driver's errors made
    Django's), without the wrapper's per-call layers; on SQLite its ``:name`` form is made
    once per statement text instead of on every call. While an ``execute_wrapper`` is
    installed, every statement goes through Django's wrapper, so the wrapper sees it."""

    __slots__ = ("raw", "cursor", "db", "driver", "native")

    def __init__(self, raw, cursor, db) -> None:
        self.raw, self.cursor, self.db = raw, cursor, db
        self.driver = cursor.cursor  # the DB-API cursor Django's wrapper holds
        # The SQLite backend's cursor converts parameters in ``execute``; the statements
        # converted here go to the sqlite3 cursor's own ``execute``.
        self.native: dict | None = {} if db.vendor == "sqlite" else None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def execute(self, sql: str, params=None):
        db = self.db
        if db.execute_wrappers or type(params) is not dict:
            return self.cursor.execute(sql, params)
        db.validate_no_broken_transaction()
        with db.wrap_database_errors:
            native = self.native
            if native is None:
                return self.driver.execute(sql, params)
            converted = native.get(sql)
            if converted is None:
                converted = native[sql] = sql % _Named()
            return sqlite3.Cursor.execute(self.driver, converted, params)

    def fetchone(self):
        with self.db.wrap_database_errors:
            return self.driver.fetchone()

    def fetchall(self):
        with self.db.wrap_database_errors:
            return self.driver.fetchall()

    @property
    def rowcount(self) -> int:
        return self.driver.rowcount

    def __getattr__(self, name: str):
        return getattr(self.cursor, name)


def cursor(connection):
    """``connection.cursor()`` for the hot paths' statements, as ``with rows.cursor(c) as
    cursor:``: one cursor kept per database connection instead of a new one per statement
    (Django's opens, wraps and closes one each time: 11 us against 4.7 us a statement on
    SQLite here, twenty-odd statements a workflow step), and statements with named
    parameters sent as Django's wrapper sends them, without its layers (``_Kept``). Django's
    error translation and ``execute_wrapper``s still see every statement; while queries are
    logged (``DEBUG``, ``CaptureQueriesContext``) a logging cursor of the moment's is used.
    A new connection (after a close) gets a new cursor."""
    if type(connection) is ConnectionProxy:  # django.db.connection: shared by all threads
        connection = db(connection._alias)
    if connection.queries_logged:
        return connection.cursor()
    kept = connection.__dict__.get("_autonomy_kept")
    if kept is None or kept.raw is None or kept.raw is not connection.connection:
        opened = connection.cursor()  # connects when needed
        kept = connection.__dict__["_autonomy_kept"] = _Kept(
            connection.connection, opened, connection
        )
    return kept


def _statement(key: tuple, build) -> tuple[str, list]:
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = build()
    return found


# --- objects from rows ---------------------------------------------------------------------


class FastLoad(models.Model):
    """A model whose objects read from the database are built as ``Model.from_db`` builds
    them, without ``Model.__init__``'s pass over the fields (Django's documented hook,
    "Customizing model loading"): a row's values become the object's attributes directly,
    as ``__init__`` would set them (a deferred field is one left out, loaded on access as
    Django does). While a ``pre_init`` or ``post_init`` receiver is connected, objects are
    built Django's way. Measured: ~9 objects a workflow step, each half the cost of
    ``__init__``."""

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        attnames = cls.__dict__.get("_loaded_attnames")
        if attnames is None:
            attnames = tuple(f.attname for f in cls._meta.concrete_fields)
            cls._loaded_attnames, cls._loaded_subsets = attnames, {}
        if pre_init.receivers or post_init.receivers:
            return super().from_db(db, field_names, values)
        if len(values) != len(attnames):
            # Some fields deferred: the values are the others', in the model's field order
            # (as Django reads them); a deferred field is one missing from ``__dict__``.
            present = cls._loaded_subsets.get(tuple(field_names))
            if present is None:
                present = tuple(name for name in attnames if name in field_names)
                cls._loaded_subsets[tuple(field_names)] = present
            attnames = present
        new = cls.__new__(cls)
        state = ModelState()
        state.adding, state.db = False, db
        new._state = state
        new.__dict__.update(zip(attnames, values, strict=True))
        return new

    @classmethod
    def new(cls, **values):
        """``cls(**values)`` of concrete fields (a relation by its name, with an object, or
        by its column's attribute name), built without ``__init__``'s exceptions for every
        field not named: each of those gets its default, as there. An object for a relation
        is set through Django's descriptor, as ``__init__`` sets it. Anything else (another
        keyword, a receiver of ``pre_init`` or ``post_init``) goes through ``__init__``.
        Measured: ~7 new objects a workflow step, each a third of ``__init__``'s cost."""
        plan = cls.__dict__.get("_new_plan")
        if plan is None:
            plan = cls._new_plan = tuple(
                (f.name, f.attname, isinstance(f.remote_field, ForeignObjectRel), f)
                for f in cls._meta.fields
                if f.column is not None and not f.generated
            )
        if pre_init.receivers or post_init.receivers:
            return cls(**values)
        new = cls.__new__(cls)
        new._state = ModelState()
        attrs, related, used = new.__dict__, [], 0
        for name, attname, relation, field in plan:
            if relation and name in values:
                related.append((name, values[name]))
                used += 1
            elif attname in values:
                attrs[attname] = values[attname]
                used += 1
            else:
                attrs[attname] = field.get_default()
        if used != len(values):
            return cls(**values)
        for name, value in related:
            setattr(new, name, value)
        return new


def copy_model(instance):
    """``copy.copy(instance)`` of a model object without the pickling protocol it goes
    through (``__reduce_ex__``, ``__getstate__``; it cost more than the rest of a step's
    operation handling): the attributes, and a state and related-object cache of its own.
    Not for models with binary fields (memoryviews), which that protocol turns to bytes."""
    clone = object.__new__(type(instance))
    clone.__dict__.update(instance.__dict__)
    # The state as ``copy.copy`` copies it, with a cache of related objects of its own.
    old = instance._state
    state = clone._state = object.__new__(type(old))
    state.__dict__.update(old.__dict__)
    state.fields_cache = dict(old.fields_cache)
    return clone


def attach(instance, name: str, related) -> None:
    """``instance.<name> = related`` for a many-to-one field, both objects read from one
    database: the key column and the cached object set as Django's descriptor sets them,
    without its checks for a relation across databases (a third of a workflow step's
    object handling went to those, ~7 a step). Anything else goes through the descriptor."""
    field = instance._meta.get_field(name)
    state = instance._state
    if (
        related is None
        or type(field) is not models.ForeignKey
        or len(field.related_fields) != 1
        or state.db is None
        or related._state.db != state.db
        or not isinstance(related, field.remote_field.model)
    ):
        setattr(instance, name, related)
        return
    key, target = field.related_fields[0]
    instance.__dict__[key.attname] = getattr(related, target.attname)
    state.fields_cache[field.name] = related


# --- field values, prepared as ``save()`` prepares them ---------------------------------------

# How a value of a given type is prepared for a field on one database, where Django's own
# preparation (``get_db_prep_save``: five to eight calls a value, ninety-odd values a
# workflow step) comes down to: passing it as it is, its ``hex`` (a UUID where the database
# has no UUID type), its UTC wall-clock text (an aware UTC datetime on SQLite), or the
# backend's JSON adaptation of a dict or list (what ``JSONField`` does after its checks for
# ``None`` and expressions, which neither is).
_AS_IS, _HEX, _UTC_TEXT, _JSON = 1, 2, 3, 4

# The field classes whose preparation depends only on a value's type, for these types (their
# ``get_prep_value`` is a type conversion). Subclasses are not: one may transform values.
_PLAIN_FIELDS = frozenset({
    models.AutoField, models.BigAutoField, models.SmallAutoField, models.IntegerField,
    models.BigIntegerField, models.SmallIntegerField, models.PositiveIntegerField,
    models.PositiveBigIntegerField, models.PositiveSmallIntegerField, models.BooleanField,
    models.CharField, models.TextField, models.SlugField, models.EmailField, models.UUIDField,
    models.DateTimeField,
})  # fmt: skip
_PLAIN_RELATIONS = frozenset({models.ForeignKey, models.OneToOneField})
_PLAIN_PRE_SAVE = frozenset({
    models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save
})  # fmt: skip
# Values no real row holds, for asking Django what it makes of a type (here, and ``Select``).
_PROBE_UUID = uuid.UUID("5eed5eed-5eed-4eed-8eed-5eed5eed5eed")
_PROBE_TIME = datetime.datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=datetime.UTC)
_PROBES = ("probe", 7315239, True, _PROBE_UUID, _PROBE_TIME)


def _fast_types(field, connection) -> dict:
    """``{type: how}`` for the values of ``field`` that need none of Django's layers on this
    database, found by asking ``get_db_prep_save`` itself what it makes of one value of each
    type (so a backend that adapts, e.g. PostgreSQL's integers, keeps Django's way)."""
    if type(field) is models.JSONField:
        return {dict: _JSON, list: _JSON, type(None): _AS_IS}
    target = field
    while target.is_relation:
        if type(target) not in _PLAIN_RELATIONS:
            return {}
        target = target.target_field
    if type(target) not in _PLAIN_FIELDS:
        return {}
    fast = {}
    for probe in _PROBES:
        try:
            prepared = field.get_db_prep_save(probe, connection)
        except (TypeError, ValueError, ValidationError, AttributeError):
            continue  # not a type this field takes
        if prepared is probe:
            fast[type(probe)] = _AS_IS
        elif type(probe) is uuid.UUID and prepared == probe.hex:
            fast[uuid.UUID] = _HEX
        elif type(probe) is datetime.datetime and prepared == _utc_text(probe):
            fast[datetime.datetime] = _UTC_TEXT
    if field.get_db_prep_save(None, connection) is None:
        fast[type(None)] = _AS_IS
    return fast


class Prepared(NamedTuple):
    """One field's value for a statement: ``name`` (its parameter), the field, and what
    ``value_of`` needs to prepare it as ``save()`` would."""

    name: str
    field: object
    attname: str
    fast: dict  # {type: how}: see ``_fast_types``
    plain_pre_save: bool  # its ``pre_save`` is only reading the attribute


def prepared(name: str, field, connection) -> Prepared:
    """How ``value_of`` prepares ``field`` for a parameter ``name`` on ``connection``'s
    database: once per statement, not per value."""
    plain = type(field).pre_save in _PLAIN_PRE_SAVE and not (
        getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    )
    return Prepared(name, field, field.attname, _fast_types(field, connection), plain)


def value_of(how: Prepared, instance, add: bool, connection):
    """``field.get_db_prep_save(field.pre_save(instance, add), connection)``, without
    Django's layers for the plain values ``how`` knows."""
    if not how.plain_pre_save:
        return how.field.get_db_prep_save(how.field.pre_save(instance, add), connection)
    value = getattr(instance, how.attname)
    if how.fast.get(type(value)) is _AS_IS:  # most values: no further call
        return value
    return prepare_value(how, value, connection)


def prepare_value(how: Prepared, value, connection):
    """``field.get_db_prep_save(value, connection)``, without Django's layers for the plain
    values ``how`` knows."""
    kind = how.fast.get(type(value))
    if kind is _AS_IS:
        return value
    if kind is _HEX:
        return value.hex
    if kind is _JSON:
        return connection.ops.adapt_json_value(value, how.field.encoder)
    if kind is _UTC_TEXT and value.tzinfo is datetime.UTC:
        return _utc_text(value)
    return how.field.get_db_prep_save(value, connection)


def _utc_text(value: datetime.datetime) -> str:
    # ``str(value.replace(tzinfo=None))`` (what ``make_naive`` and ``str`` make of it), without
    # ``replace``: an aware UTC datetime's ISO form ends in "+00:00".
    return value.isoformat(" ")[:-6]


_UTC_TEXT_DATABASES: dict[str, bool] = {}


def datetime_value(value, connection):
    """``connection.ops.adapt_datetimefield_value(value)``, for a raw statement's parameter:
    an aware UTC datetime on a database that takes its UTC wall-clock text (SQLite) made
    without ``make_naive``'s ``replace`` (the gate's read takes four a request)."""
    if type(value) is datetime.datetime and value.tzinfo is datetime.UTC:
        utc_text = _UTC_TEXT_DATABASES.get(connection.alias)
        if utc_text is None:
            adapted = connection.ops.adapt_datetimefield_value(_PROBE_TIME)
            utc_text = _UTC_TEXT_DATABASES[connection.alias] = adapted == _utc_text(_PROBE_TIME)
        if utc_text:
            return _utc_text(value)
    return connection.ops.adapt_datetimefield_value(value)


class _Insert(NamedTuple):
    sql: str
    fields: list  # the columns written, in order
    generated: list  # the database-generated ones read back (RETURNING), where it can
    params: list  # each row's fields, as ``Prepared``


def _insert_statement(connection, model, count: int, unless_taken: bool) -> _Insert:
    """``INSERT`` of ``count`` rows of ``model``, built once per database, model and count."""
    meta = model._meta
    returning = connection.features.can_return_columns_from_insert

    def build():
        fields = [f for f in meta.concrete_fields if not f.db_returning]
        generated = [f for f in meta.concrete_fields if f.db_returning] if returning else []
        params = [
            [prepared(f"{f.attname}_{n}", f, connection) for f in fields] for n in range(count)
        ]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        rows_sql = ", ".join("(" + ", ".join(f"%({p.name})s" for p in row) + ")" for row in params)
        sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {rows_sql}"
        if unless_taken:
            sql += " ON CONFLICT DO NOTHING"
        if generated:
            sql += " RETURNING " + ", ".join(quote(f.column) for f in generated)
        return _Insert(sql, fields, generated, params)

    return _statement((connection.alias, model, "insert", count, unless_taken), build)


def _values(statement: _Insert, instances: list, connection) -> dict:
    """The parameters of ``statement`` for ``instances``, prepared as ``save()`` does."""
    return {
        how.name: value_of(how, instance, True, connection)
        for instance, params in zip(instances, statement.params, strict=True)
        for how in params
    }


def _inserted(instance, generated: list, row, alias: str) -> None:
    for field, value in zip(generated, row, strict=True):
        setattr(instance, field.attname, field.to_python(value))
    instance._state.adding, instance._state.db = False, alias


def insert(instance, *, unless_taken: bool = False) -> bool:
    """``instance.save()`` of a new row: every concrete field but a database-generated key,
    which is read back (``RETURNING``) where the database can. A unique clash raises
    IntegrityError as ``create()`` would; with ``unless_taken`` it inserts nothing instead
    (``ON CONFLICT DO NOTHING``, after waiting for a clashing row's transaction to end, as
    the unique index does) and returns False, so the caller's transaction needs no
    savepoint to go on. Returns whether the row was inserted."""
    connection = db()
    statement = _insert_statement(connection, type(instance), 1, unless_taken)
    with cursor(connection) as opened:
        opened.execute(statement.sql, _values(statement, [instance], connection))
        if statement.generated:
            row = opened.fetchone()
            if row is None:
                return False
        elif opened.rowcount != 1:
            return False
        else:
            row = ()
    _inserted(instance, statement.generated, row, connection.alias)
    return True


def _insert_many(connection, instances: list) -> None:
    """``insert`` of several new rows of one model, in one statement, in order."""
    meta = instances[0]._meta
    if not connection.features.can_return_columns_from_insert and any(
        f.db_returning for f in meta.concrete_fields
    ):
        for instance in instances:  # keys it cannot read back: one at a time
            insert(instance)
        return
    statement = _insert_statement(connection, type(instances[0]), len(instances), False)
    with cursor(connection) as opened:
        opened.execute(statement.sql, _values(statement, instances, connection))
        found = opened.fetchall() if statement.generated else [()] * len(instances)
    for instance, row in zip(instances, found, strict=True):
        _inserted(instance, statement.generated, row, connection.alias)


# --- work collected in a transaction, done at the end of a block -----------------------------


class Collected:
    """What a ``Collecting`` block gathered: ``alive``, after the block, is what is still
    to be done (added in no savepoint that rolled back); empty in a nested block."""

    __slots__ = ("pending", "alive")

    def __init__(self) -> None:
        self.pending: list = []
        self.alive: list = []


class Collecting:
    """Inside the caller's transaction: ``collect(attribute, entry)`` in this block gathers
    ``entry`` for the caller to act on when the block ends (``Collected.alive``, and
    ``done``, which a subclass overrides). An entry is registered with Django's commit hooks
    (it must be callable and, called after the commit, do nothing) only so that Django's own
    bookkeeping drops it when a savepoint it was added in rolls back. If the block raises,
    the innermost transaction around it is marked to roll back: what was gathered is lost, so
    nothing done in the block may commit. A nested block leaves everything to the outermost
    one. Used by ``audit.deferred`` (its records) and ``inserts_deferred`` (rows). A class,
    not a generator: two of these blocks open in each of a workflow step's transactions."""

    __slots__ = ("attribute", "name", "connection", "collected", "outer")

    def __init__(self, attribute: str, name: str) -> None:
        self.attribute, self.name = attribute, name

    def __enter__(self) -> Collected:
        connection = self.connection = db()
        if not connection.in_atomic_block:
            raise transaction.TransactionManagementError(
                f"{self.name} must run inside a transaction"
            )
        collected = self.collected = Collected()
        self.outer = getattr(connection, self.attribute, None) is None
        if self.outer:
            setattr(connection, self.attribute, collected.pending)
        return collected

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if not self.outer:
            return False
        connection, collected = self.connection, self.collected
        setattr(connection, self.attribute, None)
        if exc_type is not None:
            transaction.set_rollback(True)
            return False
        registered = {id(hook[1]) for hook in connection.run_on_commit}
        collected.alive = [entry for entry in collected.pending if id(entry) in registered]
        if collected.alive:
            self.done(collected.alive)
        return False

    def done(self, alive: list) -> None:
        """What the outermost block does with what is still to be done, when it ends."""


def collect(attribute: str, entry) -> bool:
    """Gather ``entry`` in the ``Collecting(attribute, ...)`` block around this call, and say
    so; False outside one (the caller then acts at once)."""
    current = db()
    pending = getattr(current, attribute, None)
    if pending is None:
        return False
    current.on_commit(entry)  # transaction.on_commit(entry)
    pending.append(entry)
    return True


_LATER = "autonomy_rows_later"


class _Later:
    """A row to insert at the end of ``inserts_deferred`` (a commit hook that does nothing:
    see ``Collecting``)."""

    __slots__ = ("instance",)

    def __init__(self, instance) -> None:
        self.instance = instance

    def __call__(self) -> None:
        pass


def insert_later(instance) -> None:
    """``insert(instance)`` at the end of the ``inserts_deferred()`` block around it, with
    the rest of that block's rows (now, outside one). For rows nothing reads back in the
    same transaction: a run's timeline events."""
    if not collect(_LATER, _Later(instance)):
        insert(instance)


class _InsertsDeferred(Collecting):
    __slots__ = ()

    def done(self, alive: list) -> None:
        by_model: dict[type, list] = {}
        for later in alive:
            by_model.setdefault(type(later.instance), []).append(later.instance)
        connection = db()
        for instances in by_model.values():
            _insert_many(connection, instances)


def inserts_deferred() -> Collecting:
    """Inside the caller's transaction: rows added by ``insert_later`` in this block are
    inserted when it ends, one statement per model (a workflow step's transaction adds two
    run events: one statement fewer a step). A row added in a savepoint that rolled back is
    not inserted; if the block raises, none is (``Collecting``)."""
    return _InsertsDeferred(_LATER, "rows.inserts_deferred()")


def update(instance, names: list[str]) -> None:
    """``instance.save(update_fields=names)``; raises as that does when the row is gone."""
    if not update_if(instance, names):
        raise DatabaseError(
            f"{type(instance).__name__} {instance.pk} is gone: nothing was updated."
        )


def update_if(instance, names: list[str], **conditions) -> bool:
    """Write the named fields of ``instance`` to its row if the row still has the values
    ``conditions`` name (``QuerySet.filter(pk=..., **conditions).update(...)``, which sends
    no signal either). Returns whether it did."""
    model, connection = type(instance), db()
    meta = model._meta
    when = sorted(conditions)

    def build():
        fields = [meta.get_field(name) for name in names]
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(f.column)} = %({f.attname})s" for f in fields)
        table, pk = quote(meta.db_table), quote(meta.pk.column)
        tests = "".join(f" AND {quote(meta.get_field(n).column)} = %(when__{n})s" for n in when)
        sql = f"UPDATE {table} SET {sets} WHERE {pk} = %(pk__)s{tests}"
        return sql, [prepared(f.attname, f, connection) for f in fields]

    sql, fields = _statement((connection.alias, model, tuple(names), tuple(when)), build)
    values = {how.name: value_of(how, instance, False, connection) for how in fields}
    values["pk__"] = meta.pk.get_db_prep_value(instance.pk, connection)
    for name in when:
        field = meta.get_field(name)
        values[f"when__{name}"] = field.get_db_prep_value(conditions[name], connection)
    with cursor(connection) as opened:
        opened.execute(sql, values)
        return opened.rowcount == 1


# A positional placeholder of the ORM's SQL (as Django's SQLite backend finds them).
_POSITIONAL = re.compile(r"(?<!%)%s")


def _named(sql: str, params: list) -> tuple[str, dict]:
    """The ORM's ``%s`` placeholders as ``%(p0)s``, ``%(p1)s``...: Django's SQLite backend
    rewrites positional ones with a regular expression over the whole statement on every
    call (5% of a workflow step's instructions, counted with callgrind), named ones with one
    string formatting."""
    pieces = _POSITIONAL.split(sql)
    if len(pieces) != len(params) + 1:
        raise ValueError(f"{len(params)} parameters for {len(pieces) - 1} placeholders: {sql!r}")
    named = "".join(piece + f"%(p{n})s" for n, piece in enumerate(pieces[:-1])) + pieces[-1]
    return named, {f"p{n}": value for n, value in enumerate(params)}


class _Compiled(NamedTuple):
    sql: str
    params: dict
    at: str  # the name of the key's parameter in ``params``
    compiler: object
    converters: dict
    locks: bool
    model: type | None = None  # None for a values_list() queryset
    start: int = 0  # the model's columns in a row: row[start:end]
    end: int = 0
    init: tuple = ()  # their attribute names, for ``Model.from_db``
    populators: tuple = ()  # the ``select_related`` objects, Django's own


class Select:
    """A queryset of one key, compiled once per database and run with another key each time.

    ``Select(build, field)``: ``build(key)`` returns the queryset (joins, ``select_related``,
    ``select_for_update`` and all); ``field`` is the field the key is compared with. The first
    call compiles ``build`` of a probe key and remembers the SQL, where the key goes in its
    parameters, and how a row becomes objects (Django's own populators and converters);
    later calls only prepare the key, run the statement and build the objects, which is what
    the ORM does after compiling. Compiling is most of a small query's cost: a workflow step
    went from 6.9 to 4.7 ms when its two locking reads (one joins nine models) used this
    (measured in one process on a 30-step run).
    """

    _PROBES = {"UUIDField": _PROBE_UUID, "default": -7315239}

    def __init__(self, build, field):
        self._build, self._field, self._compiled = build, field, {}

    def _compile(self, connection) -> _Compiled:
        probe = self._PROBES.get(self._field.get_internal_type(), self._PROBES["default"])
        queryset = self._build(probe).using(connection.alias)
        compiler = queryset.query.get_compiler(using=connection.alias)
        sql, params = compiler.as_sql()
        marker = self._field.get_db_prep_value(probe, connection)
        at = [i for i, value in enumerate(params) if value == marker]
        if len(at) != 1:
            raise ValueError(f"The key appears {len(at)} times in {sql!r}: use one filter.")
        select, klass_info = compiler.select, compiler.klass_info
        converters = compiler.get_converters([column[0] for column in select[: compiler.col_count]])
        sql, named = _named(sql, list(params))
        plain = _Compiled(
            sql, named, f"p{at[0]}", compiler, converters, bool(queryset.query.select_for_update)
        )
        if klass_info is None:  # values_list(): rows only
            return plain
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return plain._replace(
            model=klass_info["model"],
            start=start,
            end=end,
            init=tuple(column[0].target.attname for column in select[start:end]),
            populators=tuple(get_related_populators(klass_info, select, connection.alias)),
        )

    def _for(self, connection) -> _Compiled:
        compiled = self._compiled.get(connection.alias)
        if compiled is None:
            compiled = self._compiled[connection.alias] = self._compile(connection)
        return compiled

    def _run(self, key, many: bool, convert: bool = True) -> tuple[list, _Compiled, str]:
        connection = db()
        compiled = self._for(connection)
        if compiled.locks and not connection.in_atomic_block:
            raise transaction.TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = dict(compiled.params)
        params[compiled.at] = self._field.get_db_prep_value(key, connection)
        with cursor(connection) as opened:
            opened.execute(compiled.sql, params)
            found = opened.fetchall() if many else [opened.fetchone()]
        if found == [None]:
            return [], compiled, connection.alias
        if compiled.converters and convert:
            converted = compiled.compiler.apply_converters(found, compiled.converters)
            found = [tuple(row) for row in converted]
        return found, compiled, connection.alias

    def rows(self, key, *, convert: bool = True) -> list[tuple]:
        """Every row the queryset (a ``values_list()``) finds for ``key``, as tuples. With
        ``convert=False``, as the driver returns them: for a caller that needs only some of
        the rows whole, and converts those (``convert``); columns without a converter (on
        SQLite: integers and text) already read as they will."""
        return self._run(key, many=True, convert=convert)[0]

    def convert(self, row: tuple) -> tuple:
        """A row of ``rows(key, convert=False)`` (or of the same columns read otherwise),
        converted as ``rows(key)`` would have."""
        compiled = self._for(db())
        if not compiled.converters:
            return row
        return tuple(next(iter(compiled.compiler.apply_converters([row], compiled.converters))))

    def get(self, key):
        """The one object the queryset finds for ``key``, or None."""
        found, compiled, alias = self._run(key, many=False)
        if not found:
            return None
        row = found[0]
        obj = compiled.model.from_db(alias, compiled.init, row[compiled.start : compiled.end])
        for populator in compiled.populators:
            populator.populate(row, obj)
        return obj

    def one(self, key):
        """As ``get``, but a missing row raises ``DoesNotExist``, as ``QuerySet.get`` does."""
        obj = self.get(key)
        if obj is None:
            model = self._build(key).model
            raise model.DoesNotExist(f"No {model.__name__} matches {key}.")
        return obj
