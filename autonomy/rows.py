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

import re
import uuid
from contextlib import contextmanager
from typing import NamedTuple

from django.db import DatabaseError, connections, transaction
from django.db.models.query import get_related_populators
from django.utils.connection import ConnectionProxy

_statements: dict[tuple, tuple[str, list]] = {}


class _Kept:
    """The cursor ``cursor()`` keeps for a connection, as a ``with`` block that leaves it
    open."""

    __slots__ = ("raw", "cursor")

    def __init__(self, raw, cursor) -> None:
        self.raw, self.cursor = raw, cursor

    def __enter__(self):
        return self.cursor

    def __exit__(self, *exc) -> bool:
        return False


def cursor(connection):
    """``connection.cursor()`` for the hot paths' statements, as ``with rows.cursor(c) as
    cursor:``: one cursor kept per database connection instead of a new one per statement
    (Django's opens, wraps and closes one each time: 11 us against 4.7 us a statement on
    SQLite here, twenty-odd statements a workflow step). Statements still go through
    Django's cursor wrapper, so its error translation and ``execute_wrapper``s see them;
    while queries are logged (``DEBUG``, ``CaptureQueriesContext``) a logging cursor of
    the moment's is used. A new connection (after a close) gets a new cursor."""
    if type(connection) is ConnectionProxy:  # django.db.connection: shared by all threads
        connection = connections[connection._alias]
    if connection.queries_logged:
        return connection.cursor()
    kept = connection.__dict__.get("_autonomy_kept")
    if kept is None or kept.raw is None or kept.raw is not connection.connection:
        opened = connection.cursor()  # connects when needed
        kept = connection.__dict__["_autonomy_kept"] = _Kept(connection.connection, opened)
    return kept


def _statement(key: tuple, build) -> tuple[str, list]:
    found = _statements.get(key)
    if found is None:
        found = _statements[key] = build()
    return found


class _Insert(NamedTuple):
    sql: str
    fields: list  # the columns written, in order
    generated: list  # the database-generated ones read back (RETURNING), where it can
    params: list  # each row's (parameter name, field) pairs


def _insert_statement(connection, model, count: int, unless_taken: bool) -> _Insert:
    """``INSERT`` of ``count`` rows of ``model``, built once per database, model and count."""
    meta = model._meta
    returning = connection.features.can_return_columns_from_insert

    def build():
        fields = [f for f in meta.concrete_fields if not f.db_returning]
        generated = [f for f in meta.concrete_fields if f.db_returning] if returning else []
        params = [[(f"{f.attname}_{n}", f) for f in fields] for n in range(count)]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        rows_sql = ", ".join("(" + ", ".join(f"%({p})s" for p, _ in row) + ")" for row in params)
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
        name: f.get_db_prep_save(f.pre_save(instance, True), connection)
        for instance, params in zip(instances, statement.params, strict=True)
        for name, f in params
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
    connection = transaction.get_connection()
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
    """What a ``collecting`` block gathered: ``alive``, after the block, is what is still
    to be done (added in no savepoint that rolled back); empty in a nested block."""

    __slots__ = ("pending", "alive")

    def __init__(self) -> None:
        self.pending: list = []
        self.alive: list = []


@contextmanager
def collecting(attribute: str, name: str):
    """Inside the caller's transaction: ``collect(attribute, entry)`` in this block gathers
    ``entry`` for the caller to act on when the block ends (``Collected.alive``). An entry
    is registered with Django's commit hooks (it must be callable and, called after the
    commit, do nothing) only so that Django's own bookkeeping drops it when a savepoint it
    was added in rolls back. If the block raises, the innermost transaction around it is
    marked to roll back: what was gathered is lost, so nothing done in the block may commit.
    A nested block leaves everything to the outermost one. Used by ``audit.deferred`` (its
    records) and ``inserts_deferred`` (rows)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(f"{name} must run inside a transaction")
    collected = Collected()
    if getattr(connection, attribute, None) is not None:
        yield collected
        return
    setattr(connection, attribute, collected.pending)
    try:
        yield collected
    except BaseException:
        transaction.set_rollback(True)
        raise
    finally:
        setattr(connection, attribute, None)
    registered = {id(hook[1]) for hook in connection.run_on_commit}
    collected.alive = [entry for entry in collected.pending if id(entry) in registered]


def collect(attribute: str, entry) -> bool:
    """Gather ``entry`` in the ``collecting(attribute, ...)`` block around this call, and say
    so; False outside one (the caller then acts at once)."""
    pending = getattr(transaction.get_connection(), attribute, None)
    if pending is None:
        return False
    transaction.on_commit(entry)
    pending.append(entry)
    return True


_LATER = "autonomy_rows_later"


class _Later:
    """A row to insert at the end of ``inserts_deferred`` (a commit hook that does nothing:
    see ``collecting``)."""

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


@contextmanager
def inserts_deferred():
    """Inside the caller's transaction: rows added by ``insert_later`` in this block are
    inserted when it ends, one statement per model (a workflow step's transaction adds two
    run events: one statement fewer a step). A row added in a savepoint that rolled back is
    not inserted; if the block raises, none is (``collecting``)."""
    with collecting(_LATER, "rows.inserts_deferred()") as collected:
        yield
    by_model: dict[type, list] = {}
    for later in collected.alive:
        by_model.setdefault(type(later.instance), []).append(later.instance)
    if by_model:
        connection = transaction.get_connection()
        for instances in by_model.values():
            _insert_many(connection, instances)


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
    model, connection = type(instance), transaction.get_connection()
    meta = model._meta
    when = sorted(conditions)

    def build():
        fields = [meta.get_field(name) for name in names]
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(f.column)} = %({f.attname})s" for f in fields)
        table, pk = quote(meta.db_table), quote(meta.pk.column)
        tests = "".join(f" AND {quote(meta.get_field(n).column)} = %(when__{n})s" for n in when)
        return f"UPDATE {table} SET {sets} WHERE {pk} = %(pk__)s{tests}", fields

    sql, fields = _statement((connection.alias, model, tuple(names), tuple(when)), build)
    values = {
        f.attname: f.get_db_prep_save(f.pre_save(instance, False), connection) for f in fields
    }
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

    _PROBES = {"UUIDField": uuid.UUID("5eed5eed-5eed-4eed-8eed-5eed5eed5eed"), "default": -7315239}

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

    def _run(self, key, many: bool, convert: bool = True) -> tuple[list, _Compiled, str]:
        connection = transaction.get_connection()
        compiled = self._compiled.get(connection.alias)
        if compiled is None:
            compiled = self._compiled[connection.alias] = self._compile(connection)
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
        """A row of ``rows(key, convert=False)``, converted as ``rows(key)`` would have."""
        compiled = self._compiled[transaction.get_connection().alias]
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
