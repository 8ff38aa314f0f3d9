"""Celery's prefork pool, whose children survive a sibling killed while it waited for work.

A broker without an event loop (the embedded filesystem one; ``make run``) gets billiard's
blocking pool: every child reads its jobs from ONE pipe, under ONE lock shared by all of them
(a ``SemLock``). An idle child takes that lock and then blocks reading the pipe until the next
job arrives, so at almost any moment one idle child holds it. Kill that child (SIGKILL, the
OOM killer) and the lock is never given back: its replacement and every sibling wait on it
forever, and the worker takes no task again while it still looks alive (seen with ``make
run``: half the time a child was killed, the whole worker stopped). Brokers with an event loop
(Redis, RabbitMQ) get Celery's ``AsynPool``, whose children each have pipes of their own;
this module leaves that one alone.

Here a child waits for the pipe to become readable WITHOUT the lock, then takes the lock
only to read a job already there (after checking again that no sibling took it first), so it
holds the lock for the microseconds of one read. Configured as ``CELERY_WORKER_POOL``; ``-P
prefork`` means this pool too, and ``-P solo`` / ``-P threads`` are unchanged.
"""

from billiard import pool as billiard_pool
from billiard.common import pickle_loads
from celery.concurrency import prefork


class Worker(billiard_pool.Worker):
    def _make_recv_method(self, conn):
        lock = getattr(conn, "_rlock", None)
        if lock is None:  # a pipe of this child's own (AsynPool): nothing shared to hold
            return super()._make_recv_method(conn)
        reader = conn._reader

        def _recv(timeout, loads=pickle_loads):
            if not reader.poll(timeout):
                return False, None
            if not lock.acquire(timeout=timeout):
                return False, None
            try:
                if not reader.poll(0):
                    return False, None  # a sibling woke up too and read it first
                return True, loads(reader.recv_bytes())
            finally:
                lock.release()

        return _recv


class BlockingPool(billiard_pool.Pool):
    Worker = Worker


class TaskPool(prefork.TaskPool):
    BlockingPool = BlockingPool
