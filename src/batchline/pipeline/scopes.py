"""Batching scopes: where a flow switches from whole-context to batch-by-batch.

A scope starts at a trigger agent and ends at the next terminator (both inside), or at
the end of its sequence. Scopes do not nest, and a scope that starts inside a parallel
branch must end inside that branch. ``BatchingScopeManager`` finds scopes and reports
every misplacement at once when a ``Pipeline`` is built; ``compile_flow`` turns a flow
into the units the pipeline runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchline.pipeline.config import BatchingConfig, check_chunk_size, check_over
from batchline.pipeline.errors import BatchingConfigurationError
from batchline.pipeline.flow import Chunked, Node, Parallel, Sequence, Step, to_node


@dataclass(frozen=True, eq=False)
class BatchingScope:
    """A stretch of a flow run batch by batch.

    Attributes:
        trigger: the agent that starts the scope.
        terminator: the agent that ends it, or None when it runs to the end.
        steps: the nodes inside the scope, trigger and terminator included.
        chunk_size: items per batch.
        over: the list field batched (None: found at run time).
        index: 0-based number of the scope in the flow.
    """

    trigger: Step
    terminator: Step | None
    steps: tuple[Node, ...]
    chunk_size: int
    over: str | None
    index: int = 0

    @property
    def name(self) -> str:
        """The trigger's name."""
        return self.trigger.name

    @property
    def config(self) -> BatchingConfig:
        """The trigger's batching configuration."""
        return self.trigger.config

    def __repr__(self) -> str:
        end = self.terminator.name if self.terminator else "end"
        return (
            f"BatchingScope({self.name} .. {end}, chunk_size={self.chunk_size}, over={self.over!r})"
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
    problems: list[str] = field(default_factory=list)
    scopes: list[BatchingScope] = field(default_factory=list)

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
        for j in range(start + 1, len(nodes)):
            node = nodes[j]
            if isinstance(node, Step) and node.config.trigger:
                self.problems.append(
                    f"{where}: `{node.name}` starts a batching scope inside the scope opened by "
                    f"`{trigger.name}`; scopes cannot nest. End the first scope before it "
                    "(ends_batching), or remove one trigger."
                )
            if isinstance(node, Step) and node.config.terminator:
                return j, node
            if isinstance(node, Parallel):
                self._check_parallel_in_scope(node, trigger, where)
        return len(nodes) - 1, None

    def _check_parallel_in_scope(self, group: Parallel, trigger: Step, where: str) -> None:
        from batchline.pipeline.flow import iter_steps  # noqa: PLC0415

        for step in iter_steps(group):
            if step.config.trigger:
                self.problems.append(
                    f"{where}: `{step.name}` starts a batching scope inside the scope opened by "
                    f"`{trigger.name}` (in a parallel group); scopes cannot nest."
                )
            if step.config.terminator:
                self.problems.append(
                    f"{where}: `{step.name}` ends the scope opened by `{trigger.name}` from "
                    "inside a parallel group; a scope must start and end at the same level."
                )

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
        scope = BatchingScope(trigger, terminator, steps, chunk_size, over, len(self.scopes))
        self.scopes.append(scope)
        return scope


class BatchingScopeManager:
    """Finds the batching scopes of a flow and checks they are well placed."""

    def detect_scopes(self, flow: object) -> list[BatchingScope]:
        """The scopes of ``flow``, in order (misplacements are not raised here)."""
        compiler = _Compiler()
        compiler.compile(to_node(flow))
        return compiler.scopes

    def validate_scopes(self, flow: object) -> list[BatchingScope]:
        """The scopes of ``flow``; raise ``BatchingConfigurationError`` listing every problem."""
        compiler = _Compiler()
        compiler.compile(to_node(flow))
        _raise(compiler.problems)
        return compiler.scopes


def compile_flow(flow: Node) -> tuple[tuple[Unit, ...], list[BatchingScope]]:
    """The units a pipeline runs, and its scopes; raises on any misplaced scope."""
    compiler = _Compiler()
    units, _ = compiler.compile(flow)
    _raise(compiler.problems)
    return units, compiler.scopes


def _raise(problems: list[str]) -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise BatchingConfigurationError(problems[0])
    listed = "\n".join(f"  - {problem}" for problem in problems)
    raise BatchingConfigurationError(f"{len(problems)} batching problems:\n{listed}")
