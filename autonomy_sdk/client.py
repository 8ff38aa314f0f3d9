"""The agent's client: one set of calls, blocking (``Client``) or asyncio (``AsyncClient``).

Every call is described once (method, path, body, whether a retry is safe, how to read the
answer); the two clients differ only in how they send it. Writes that could be repeated by a
retry carry an ``Idempotency-Key`` (generated when not given), so a network failure never
turns into a second action or a second run.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from autonomy_sdk import errors

# "shadowed": decided and recorded at the shadow autonomy level, never executed.
FINISHED = {"succeeded", "failed", "denied", "cancelled", "shadowed"}
RETRY_STATUSES = {429, 502, 503, 504}


@dataclass
class Action:
    id: str
    operation: str
    decision: str
    status: str
    risk_score: int = 0
    reasons: list = field(default_factory=list)
    outcome: Any = None
    error: Any = None
    autonomy_level: str = "guarded"
    executed: bool = False  # whether its system was called; never for a shadowed action
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: dict) -> "Action":
        return cls(
            id=data["id"],
            operation=data["operation"],
            decision=data["decision"],
            status=data["status"],
            risk_score=data.get("risk_score", 0),
            reasons=data.get("reasons") or [],
            outcome=data.get("outcome"),
            error=data.get("error"),
            autonomy_level=data.get("autonomy_level", "guarded"),
            executed=bool(data.get("executed")),
            raw=data,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class Task:
    id: str
    run: str
    step: str
    name: str
    status: str
    instructions: str = ""
    input: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: dict) -> "Task":
        return cls(
            id=data["id"],
            run=data["run"],
            step=data["step"],
            name=data["name"],
            status=data["status"],
            instructions=data.get("instructions", ""),
            input=data.get("input") or {},
            raw=data,
        )


@dataclass
class Claim:
    id: int
    resource_key: str
    status: str
    priority: int = 0
    lease_until: str | None = None
    yield_requested: bool = False
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, data: dict) -> "Claim":
        return cls(
            id=data["id"],
            resource_key=data["resource_key"],
            status=data["status"],
            priority=data.get("priority", 0),
            lease_until=data.get("lease_until"),
            yield_requested=data.get("yield_requested", False),
            raw=data,
        )

    @property
    def held(self) -> bool:
        return self.status == "held"


@dataclass
class Rollout:
    """A rollout plan the agent is in: the wave the plan is at, whether its waves reach this
    agent yet, and the autonomy level that gives it (on ``operations``; empty: all)."""

    plan: str
    name: str
    wave: int
    reached: bool
    level: str
    operations: list = field(default_factory=list)

    @classmethod
    def of(cls, data: dict) -> "Rollout":
        return cls(
            plan=data["plan"],
            name=data.get("name", data["plan"]),
            wave=data["wave"],
            reached=bool(data["reached"]),
            level=data["level"],
            operations=data.get("operations") or [],
        )

    @classmethod
    def all_of(cls, me: dict) -> list["Rollout"]:
        return [cls.of(item) for item in me.get("rollouts") or []]


@dataclass
class _Call:
    method: str
    path: str
    parse: Callable[[Any], Any] = lambda body: body
    json: Any = None
    params: dict | None = None
    retry_safe: bool = True
    idempotency_key: str | None = None
    empty: Any = None  # the answer to 204 No Content


class _Calls:
    """Every API call an agent makes, described once for both clients."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        transport=None,
    ):
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff = retries, backoff
        self._options = {
            "base_url": self.base_url,
            "headers": {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            "timeout": timeout,
            "transport": transport,
        }

    def _run(self, call: _Call):  # pragma: no cover - each client defines it
        raise NotImplementedError

    # identity
    def me(self) -> dict:
        return self._run(_Call("GET", "/api/v1/agents/me/"))

    def rollouts(self) -> list[Rollout]:
        """The rollout plans this agent is in (from ``me()``), each with its wave and level."""
        return self._run(_Call("GET", "/api/v1/agents/me/", Rollout.all_of))

    # actions
    def request_action(
        self,
        operation: str,
        params: dict | None = None,
        reason: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Action:
        """Ask the gate once and return its answer without waiting for execution."""
        return self._run(
            _Call(
                "POST",
                "/api/v1/actions/",
                Action.of,
                json={"operation": operation, "params": params or {}, "reason": reason},
                idempotency_key=idempotency_key or str(uuid.uuid4()),
            )
        )

    def action(self, action_id: str) -> Action:
        return self._run(_Call("GET", f"/api/v1/actions/{action_id}/", Action.of))

    def simulate(self, operation: str, params: dict | None = None) -> dict:
        return self._run(
            _Call(
                "POST", "/api/v1/simulate/", json={"operation": operation, "params": params or {}}
            )
        )

    # workflow tasks
    def next_task(self, *, claim: bool = True) -> Task | None:
        """The oldest task offered to this agent (claimed for it); None when there is none.

        Claiming changes state, so it is a POST that is not retried blindly: a lost answer
        would otherwise claim a second task and leave the first waiting for its lease.
        """
        if not claim:
            return self._run(
                _Call("GET", "/api/v1/tasks/next/", Task.of, params={"claim": "false"})
            )
        return self._run(_Call("POST", "/api/v1/tasks/next/", Task.of, retry_safe=False))

    def claim_task(self, task_id: str) -> Task:
        return self._run(_Call("POST", f"/api/v1/tasks/{task_id}/claim/", Task.of))

    def task_context(self, task_id: str) -> dict:
        return self._run(_Call("GET", f"/api/v1/tasks/{task_id}/context/"))

    def complete_task(self, task_id: str, output: dict | None = None) -> Task:
        return self._run(
            _Call(
                "POST", f"/api/v1/tasks/{task_id}/complete/", Task.of, json={"output": output or {}}
            )
        )

    def handoff_task(self, task_id: str, agent: str, reason: str = "") -> Task:
        return self._run(
            _Call(
                "POST",
                f"/api/v1/tasks/{task_id}/handoff/",
                Task.of,
                json={"agent": agent, "reason": reason},
                retry_safe=False,
            )
        )

    def escalate_task(self, task_id: str, reason: str) -> Task:
        return self._run(
            _Call(
                "POST",
                f"/api/v1/tasks/{task_id}/escalate/",
                Task.of,
                json={"reason": reason},
                retry_safe=False,
            )
        )

    def fail_task(self, task_id: str, message: str, *, retryable: bool = True) -> Task:
        return self._run(
            _Call(
                "POST",
                f"/api/v1/tasks/{task_id}/fail/",
                Task.of,
                json={"message": message, "retryable": retryable},
                retry_safe=False,
            )
        )

    # runs and messages
    def start_run(
        self, template: str, context: dict | None = None, *, idempotency_key: str | None = None
    ) -> dict:
        return self._run(
            _Call(
                "POST",
                "/api/v1/runs/",
                json={"template": template, "context": context or {}},
                idempotency_key=idempotency_key or str(uuid.uuid4()),
            )
        )

    def run(self, run_id: str) -> dict:
        return self._run(_Call("GET", f"/api/v1/runs/{run_id}/"))

    def send_message(self, run_id: str, body: dict, *, to: str | None = None) -> dict:
        return self._run(
            _Call(
                "POST",
                f"/api/v1/runs/{run_id}/messages/",
                json={"body": body, "recipient": to},
                retry_safe=False,
            )
        )

    def messages(self, run_id: str, *, after: int | None = None) -> dict:
        """``{"results": [...], "after": <id>}``; pass ``after`` back to read only new ones."""
        params = {} if after is None else {"after": after}
        return self._run(_Call("GET", f"/api/v1/runs/{run_id}/messages/", params=params))

    # claims on shared resources
    def acquire(
        self,
        resource_key: str,
        *,
        priority: int = 0,
        lease_seconds: int = 60,
        run: str | None = None,
    ) -> Claim:
        """Hold ``resource_key`` or wait in line (``claim.held`` says which); never blocks."""
        return self._run(
            _Call(
                "POST",
                "/api/v1/claims/",
                Claim.of,
                json={
                    "resource_key": resource_key,
                    "priority": priority,
                    "lease_seconds": lease_seconds,
                    "run": run,
                },
            )
        )

    def claim(self, claim_id: int) -> Claim:
        return self._run(_Call("GET", f"/api/v1/claims/{claim_id}/", Claim.of))

    def renew(self, claim_id: int) -> Claim:
        return self._run(_Call("POST", f"/api/v1/claims/{claim_id}/renew/", Claim.of))

    def release(self, claim_id: int) -> Claim:
        return self._run(_Call("POST", f"/api/v1/claims/{claim_id}/release/", Claim.of))

    # shared by both clients
    def _request_kwargs(self, call: _Call) -> dict:
        headers = {"Idempotency-Key": call.idempotency_key} if call.idempotency_key else {}
        return {
            "method": call.method,
            "url": call.path,
            "json": call.json,
            "params": call.params,
            "headers": headers,
        }

    def _retryable(self, call: _Call) -> bool:
        return call.method == "GET" or call.retry_safe or bool(call.idempotency_key)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        after = response.headers.get("Retry-After") if response is not None else None
        if after and after.isdigit():
            return min(float(after), 30.0)
        return self.backoff * (2**attempt)

    @staticmethod
    def _answer(call: _Call, response: httpx.Response):
        if response.status_code == 204:
            return call.empty
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise errors.from_response(response.status_code, body)
        return call.parse(body)

    @staticmethod
    def _settled(action: Action) -> Action:
        if action.status == "denied" or action.status == "cancelled":
            raise errors.ActionDenied(action)
        if action.status == "failed":
            raise errors.ActionFailed(action)
        return action


class Client(_Calls):
    """Blocking client. ``act`` asks the gate and, by default, waits for the result."""

    def __init__(self, base_url: str, token: str, **options):
        super().__init__(base_url, token, **options)
        self._http = httpx.Client(**{k: v for k, v in self._options.items() if v is not None})

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, call: _Call):
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._http.request(**self._request_kwargs(call))
            except httpx.TransportError as exc:
                if attempt >= self.retries or not self._retryable(call):
                    raise errors.ServerError("unreachable", str(exc)) from exc
            else:
                retry = response.status_code in RETRY_STATUSES and self._retryable(call)
                if not retry or attempt >= self.retries:
                    return self._answer(call, response)
            time.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")  # pragma: no cover

    def act(
        self,
        operation: str,
        params: dict | None = None,
        reason: str = "",
        *,
        wait: bool = True,
        timeout: float = 300.0,
        poll: float = 0.5,
        idempotency_key: str | None = None,
    ) -> Action:
        """Ask for an action. With ``wait``, wait through approval and execution: return the
        succeeded action, or raise ``ActionDenied`` / ``ActionFailed`` / ``WaitTimeout``."""
        action = self.request_action(operation, params, reason, idempotency_key=idempotency_key)
        if not wait:
            return action
        deadline = time.monotonic() + timeout
        while not action.finished:
            if time.monotonic() >= deadline:
                raise errors.WaitTimeout(
                    "wait_timeout", f"Still {action.status}.", {"action_id": action.id}
                )
            time.sleep(poll)
            action = self.action(action.id)
        return self._settled(action)


class AsyncClient(_Calls):
    """The same calls for asyncio: ``await client.act(...)``."""

    def __init__(self, base_url: str, token: str, **options):
        super().__init__(base_url, token, **options)
        self._http = httpx.AsyncClient(**{k: v for k, v in self._options.items() if v is not None})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _run(self, call: _Call):
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = await self._http.request(**self._request_kwargs(call))
            except httpx.TransportError as exc:
                if attempt >= self.retries or not self._retryable(call):
                    raise errors.ServerError("unreachable", str(exc)) from exc
            else:
                retry = response.status_code in RETRY_STATUSES and self._retryable(call)
                if not retry or attempt >= self.retries:
                    return self._answer(call, response)
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")  # pragma: no cover

    async def act(
        self,
        operation: str,
        params: dict | None = None,
        reason: str = "",
        *,
        wait: bool = True,
        timeout: float = 300.0,
        poll: float = 0.5,
        idempotency_key: str | None = None,
    ) -> Action:
        action = await self.request_action(
            operation, params, reason, idempotency_key=idempotency_key
        )
        if not wait:
            return action
        deadline = time.monotonic() + timeout
        while not action.finished:
            if time.monotonic() >= deadline:
                raise errors.WaitTimeout(
                    "wait_timeout", f"Still {action.status}.", {"action_id": action.id}
                )
            await asyncio.sleep(poll)
            action = await self.action(action.id)
        return self._settled(action)
