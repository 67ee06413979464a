"""Batching scopes: where a flow switches from whole-context to batch-by-batch.

A scope starts at a trigger agent and ends at the next terminator (both inside), or at
the end of its sequence. Scopes do not nest, and a scope that starts inside a parallel
branch must end inside that branch. ``BatchingScopeManager`` finds scopes and reports
every misplacement at once when a ``Pipeline`` is built; ``compile_flow`` turns a flow
into the units the pipeline runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from batchline.pipeline.agent import Agent
from batchline.pipeline.config import BatchingConfig, check_chunk_size, check_over
from batchline.pipeline.errors import BatchingConfigurationError, PipelineWarning
from batchline.pipeline.flow import Chunked, Node, Parallel, Sequence, Step, iter_steps, to_node


class AgentList(tuple[Any, ...]):
    """The agents of a scope: a tuple that also compares equal to a list of them."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return tuple(self) == tuple(other)
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


def agent_name(agent: object) -> str:
    """The name of an agent as written in a flow: a class, an instance, a function, a step."""
    if agent is None:
        return ""
    if isinstance(agent, type):
        return agent.__name__
    name = getattr(agent, "name", None)
    if isinstance(name, str):
        return name
    return str(getattr(agent, "__name__", None) or type(agent).__name__)


def _same_agent(stored: object, agent: object) -> bool:
    if stored is agent:
        return True
    if isinstance(agent, Step):
        return _same_agent(stored, agent.source) or stored is agent.agent
    if isinstance(stored, Step):
        return _same_agent(stored.source, agent) or stored.agent is agent
    if isinstance(agent, type) and not isinstance(stored, type):
        return type(stored) is agent and isinstance(stored, Agent)
    if isinstance(stored, type) and not isinstance(agent, type):
        return type(agent) is stored and isinstance(agent, Agent)
    return False


@dataclass(frozen=True, eq=False)
class BatchingScope:
    """A stretch of a flow run batch by batch (RAAF's scope, with Python names).

    A scope found in a flow holds its agents as written there (classes, instances or
    functions). One can also be built directly, e.g. to check a configuration:
    ``BatchingScope(trigger_agent=Enrich, scope_agents=[Score], chunk_size=50,
    field="companies").valid()``.

    Attributes:
        trigger_agent: the agent that starts the scope.
        scope_agents: the agents after the trigger, up to and including the terminator.
        terminator_agent: the agent that ends the scope, or None when it runs to the end.
        chunk_size: items per batch.
        field: the list field batched (None: found at run time).
        steps: the flow nodes inside the scope, trigger and terminator included.
        index: 0-based number of the scope in the flow.
    """

    trigger_agent: Any
    scope_agents: SequenceOf[Any] = ()
    terminator_agent: Any = None
    chunk_size: int | None = None
    field: str | None = None
    steps: tuple[Node, ...] = dc_field(default=(), repr=False)
    index: int = dc_field(default=0, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope_agents", AgentList(self.scope_agents or ()))

    # -- the design's API -----------------------------------------------------------

    def valid(self) -> bool:
        """True when the scope has a trigger and a positive integer ``chunk_size``."""
        size = self.chunk_size
        return self.trigger_agent is not None and type(size) is int and size > 0

    @property
    def is_valid(self) -> bool:
        """Same as ``valid()``."""
        return self.valid()

    def includes_agent(self, agent: object) -> bool:
        """Whether ``agent`` (a class, an instance, a function or a step) is in the scope."""
        return any(_same_agent(stored, agent) for stored in self.all_agents)

    @property
    def all_agents(self) -> list[Any]:
        """The trigger, then the other agents of the scope."""
        agents = [self.trigger_agent, *self.scope_agents]
        if self.terminator_agent is not None and not any(
            stored is self.terminator_agent for stored in agents
        ):
            agents.append(self.terminator_agent)
        return agents

    def to_dict(self) -> dict[str, Any]:
        """The scope as plain data, agents by name."""
        return {
            "trigger_agent": agent_name(self.trigger_agent),
            "scope_agents": [agent_name(agent) for agent in self.scope_agents],
            "terminator_agent": (
                agent_name(self.terminator_agent) if self.terminator_agent is not None else None
            ),
            "chunk_size": self.chunk_size,
            "field": self.field,
        }

    # -- what the pipeline uses ----------------------------------------------------

    @property
    def name(self) -> str:
        """The trigger's name."""
        return agent_name(self.trigger_agent)

    @property
    def over(self) -> str | None:
        """The list field batched (same as ``field``)."""
        return self.field

    @property
    def trigger(self) -> Step | None:
        """The trigger's flow step (None for a scope not found in a flow)."""
        first = self.steps[0] if self.steps else None
        return first if isinstance(first, Step) else None

    @property
    def terminator(self) -> Step | None:
        """The terminator's flow step, or None when the scope runs to the end."""
        last = self.steps[-1] if self.steps else None
        if self.terminator_agent is None or not isinstance(last, Step):
            return None
        return last

    @property
    def config(self) -> BatchingConfig:
        """The trigger's batching configuration."""
        trigger = self.trigger
        if trigger is not None:
            return trigger.config
        config = getattr(self.trigger_agent, "batching_config", None)
        return config if isinstance(config, BatchingConfig) else BatchingConfig()

    def __repr__(self) -> str:
        end = agent_name(self.terminator_agent) if self.terminator_agent is not None else "end"
        return (
            f"BatchingScope({self.name} .. {end}, chunk_size={self.chunk_size}, "
            f"field={self.field!r})"
        )


@dataclass(frozen=True, eq=False)
class ScopeUnit:
    """A scope as a unit of the compiled flow."""

    scope: BatchingScope


@dataclass(frozen=True, eq=False)
class ParallelUnit:
    """Branches, each compiled to its own units."""

    branches: tuple[tuple[Unit, ...], ...]
    node: Parallel


Unit = Step | Chunked | ScopeUnit | ParallelUnit


@dataclass
class _Compiler:
    problems: list[str] = dc_field(default_factory=list)
    scopes: list[BatchingScope] = dc_field(default_factory=list)

    def compile(self, node: Node, *, where: str = "flow") -> tuple[tuple[Unit, ...], bool]:
        """Units of a node's sequence, and whether a scope was left open at its end."""
        nodes = node.steps if isinstance(node, Sequence) else (node,)
        units: list[Unit] = []
        open_in_branch = False
        i = 0
        while i < len(nodes):
            current = nodes[i]
            if isinstance(current, Step) and current.config.trigger:
                end, terminator = self._scope_end(nodes, i, where)
                units.append(ScopeUnit(self._scope(current, terminator, nodes[i : end + 1])))
                i = end + 1
                continue
            if isinstance(current, Step) and current.config.terminator:
                if open_in_branch:
                    self.problems.append(
                        f"{where}: `{current.name}` ends a batching scope that starts inside the "
                        "parallel group before it; a scope must start and end in the same branch."
                    )
                else:
                    self.problems.append(
                        f"{where}: `{current.name}` ends batching, but no scope is open there "
                        "(no trigger agent before it). Remove ends_batching from it, or add "
                        "triggers_batching to an agent before it."
                    )
                units.append(current)
            elif isinstance(current, Parallel):
                branches = []
                for number, branch in enumerate(current.branches, start=1):
                    compiled, left_open = self.compile(branch, where=f"{where} branch {number}")
                    branches.append(compiled)
                    open_in_branch = open_in_branch or left_open
                units.append(ParallelUnit(tuple(branches), current))
            else:
                units.append(current)  # type: ignore[arg-type]
            i += 1
        left_open = (
            bool(units)
            and isinstance(units[-1], ScopeUnit)
            and (units[-1].scope.terminator is None)
        )
        return tuple(units), left_open

    def _scope_end(
        self, nodes: tuple[Node, ...], start: int, where: str
    ) -> tuple[int, Step | None]:
        trigger = nodes[start]
        assert isinstance(trigger, Step)
        if trigger.config.terminator:
            return start, trigger  # an agent that triggers and ends: a one-agent scope
        nested = False
        for j in range(start + 1, len(nodes)):
            node = nodes[j]
            if isinstance(node, Step) and node.config.trigger:
                nested = True
                self.problems.append(
                    f"{where}: `{node.name}` starts a batching scope inside the scope opened by "
                    f"`{trigger.name}`; scopes cannot nest. End the first scope before it "
                    f"(ends_batching on the last agent that should run per batch), or remove "
                    "one trigger."
                )
            if isinstance(node, Step) and node.config.terminator:
                return j, node
            if isinstance(node, Parallel):
                nested = self._check_parallel_in_scope(node, trigger, where) or nested
        after = nodes[start + 1 :]
        if after and not nested and not trigger.config.runs_to_end:
            names = ", ".join(f"`{node!r}`" for node in after)
            first = after[0]
            example = (
                f" (e.g. {first.name}.ends_batching() or @ends_batching on its class)"
                if isinstance(first, Step) and isinstance(first.source, type)
                else ""
            )
            self.problems.append(
                f"{where}: `{trigger.name}` triggers batching but no agent after it ends the "
                f"scope, so {names} would also run once per batch, each on that batch's part "
                "of the list (to aggregate over every batch, an agent must come after the "
                "scope). Mark the last agent that should run per batch with ends_batching"
                f"{example}, or declare {trigger.name}.triggers_batching(..., "
                "runs_to_end=True) if every agent after it should run per batch."
            )
        return len(nodes) - 1, None

    def _check_parallel_in_scope(self, group: Parallel, trigger: Step, where: str) -> bool:
        found = False
        for step in iter_steps(group):
            if step.config.trigger:
                found = True
                self.problems.append(
                    f"{where}: `{step.name}` starts a batching scope inside the scope opened by "
                    f"`{trigger.name}` (in a parallel group); scopes cannot nest."
                )
            if step.config.terminator:
                found = True
                self.problems.append(
                    f"{where}: `{step.name}` ends the scope opened by `{trigger.name}` from "
                    "inside a parallel group; a scope must start and end at the same level."
                )
        return found

    def _scope(
        self, trigger: Step, terminator: Step | None, steps: tuple[Node, ...]
    ) -> BatchingScope:
        config = trigger.config
        where = f"`{trigger.name}`"
        try:
            chunk_size = check_chunk_size(config.chunk_size, where)
            over = check_over(config.over, where)
        except BatchingConfigurationError as exc:
            self.problems.append(str(exc))
            chunk_size, over = 1, None
        if config.load_existing is not None and config.skip_if is None:
            self.problems.append(
                f"{where}: `load_existing` is set without `skip_if`; it is called only for "
                "the items skip_if skips, so it would never run. Add skip_if, or drop "
                "load_existing."
            )
        agents = [step.source for node in steps[1:] for step in iter_steps(node)]
        scope = BatchingScope(
            trigger_agent=trigger.source,
            scope_agents=agents,
            terminator_agent=terminator.source if terminator is not None else None,
            chunk_size=chunk_size,
            field=over,
            steps=steps,
            index=len(self.scopes),
        )
        self.scopes.append(scope)
        return scope


class BatchingScopeManager:
    """Finds the batching scopes of a flow and checks they are well placed.

    ``flow`` may be anything a ``Pipeline`` takes (a node built with ``>>`` and ``|``,
    an agent class or instance, a function) or a list of those, read as a sequence.
    """

    def detect_scopes(self, flow: object) -> list[BatchingScope]:
        """The scopes of ``flow``, in order (misplacements are not raised here)."""
        compiler = _Compiler()
        compiler.compile(_as_node(flow))
        return compiler.scopes

    def validate_scopes(self, scopes: object) -> list[BatchingScope]:
        """Check scopes; raise ``BatchingConfigurationError`` listing every problem at once.

        Args:
            scopes: scopes (e.g. from ``detect_scopes``), each checked with ``valid()``;
                or a flow, whose scopes are detected and whose placement is checked too.

        Returns:
            The scopes checked.
        """
        if isinstance(scopes, list | tuple) and all(isinstance(s, BatchingScope) for s in scopes):
            checked = list(scopes)
            problems = [
                f"invalid batching scope {scope.to_dict()}: it needs a trigger agent and a "
                "positive integer chunk_size."
                for scope in checked
                if not scope.valid()
            ]
            _raise(problems)
            return checked
        compiler = _Compiler()
        compiler.compile(_as_node(scopes))
        _raise(compiler.problems)
        return compiler.scopes

    def flatten_flow_chain(self, flow: object) -> list[Any]:
        """Every agent of ``flow`` in order, parallel branches included, as written."""
        return [step.source for step in iter_steps(_as_node(flow))]


def _as_node(flow: object) -> Node:
    if isinstance(flow, list | tuple):
        return Sequence.of(*(_as_node(part) for part in flow))
    return to_node(flow)


def compile_flow(flow: Node) -> tuple[tuple[Unit, ...], list[BatchingScope]]:
    """The units a pipeline runs, and its scopes; raises on any misplaced scope."""
    compiler = _Compiler()
    units, _ = compiler.compile(flow)
    _raise(compiler.problems)
    _warn_about_idle_hooks(flow)
    return units, compiler.scopes


def _warn_about_idle_hooks(flow: Node) -> None:
    """Hooks declared on an agent that triggers no scope never run: say so."""
    for step in iter_steps(flow):
        config = step.config
        events = [event for event, hooks in config.hooks.items() if hooks]
        if events and not config.trigger:
            warnings.warn(
                f"`{step.name}` has {', '.join(events)} hooks but does not trigger batching; "
                "hooks run only on a scope's trigger agent. Register them on the trigger.",
                PipelineWarning,
                stacklevel=4,
            )


def _raise(problems: list[str]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise BatchingConfigurationError(problems[0])
    listed = "\n".join(f"  - {problem}" for problem in problems)
    raise BatchingConfigurationError(f"{len(problems)} batching problems:\n{listed}")
