"""Predefined-role set cover: the fewest-excess set of predefined roles that covers a need.

Given the permissions one identity needs on one resource and the predefined role catalogue,
find a set of roles whose union contains every needed permission while granting as few other
permissions ("excess") as possible. The objective is lexicographic and deterministic:

1. the number of excess permissions in the union (least privilege first),
2. then the number of roles (fewer bindings),
3. then the sorted role names (stable across re-plans).

Method (see docs/provisioning.md):

- Candidates are the allowed roles that contain at least one needed permission. A candidate
  is dropped when another candidate *dominates* it (covers a superset of the needed
  permissions with a subset of its excess): swapping a dominated role for its dominator never
  makes a cover worse, so this keeps the search exact.
- **Exact**: depth-first branch and bound. Branch on the uncovered permission with the fewest
  candidate roles; the excess of a partial cover can only grow as roles are added, so a
  partial cover whose excess already exceeds the best known cover is cut. The search starts
  from the best heuristic cover, so cuts begin immediately.
- **Heuristic** (when the search exceeds ``node_budget``): weighted greedy set cover — take the
  role with the smallest "new excess per newly covered permission" until everything is
  covered. The result is never worse than the *per-permission baseline* (for every needed
  permission, the role with the least excess that contains it, unioned): that baseline is
  computed too and the better of the two is kept. This is the documented bound
  (:attr:`Cover.bound`): ``len(cover.excess) <= cover.bound`` always holds, and an exact
  cover is optimal.

Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from zt_pipelines.errors import InputError

#: search nodes explored before the exact search gives up and keeps the heuristic cover.
DEFAULT_NODE_BUDGET = 50_000


class CoverError(InputError):
    """No allowed predefined role grants a needed permission, so no cover exists."""


@dataclass(frozen=True)
class Cover:
    """A set of predefined roles covering a need.

    Attributes:
        roles: the chosen roles, sorted.
        needed: the permissions that had to be covered.
        granted: every permission the chosen roles grant together.
        excess: ``granted - needed``.
        exact: True when the search proved this cover optimal.
        bound: the excess of the per-permission baseline cover; ``len(excess) <= bound``.
        explored: search nodes explored (0 for trivial covers).
        candidates: candidate roles left after dominance filtering.
    """

    roles: tuple[str, ...]
    needed: frozenset[str]
    granted: frozenset[str]
    excess: frozenset[str]
    exact: bool
    bound: int
    explored: int = 0
    candidates: int = 0

    @property
    def method(self) -> str:
        """``"exact"`` or ``"heuristic"``."""
        return "exact" if self.exact else "heuristic"


_Key = tuple[int, int, tuple[str, ...]]
_Cands = Mapping[str, tuple[frozenset[str], frozenset[str]]]


def find_cover(
    needed: Iterable[str],
    roles: Mapping[str, frozenset[str]],
    *,
    allowed: Callable[[str, frozenset[str]], bool] | None = None,
    node_budget: int = DEFAULT_NODE_BUDGET,
    where: str | None = None,
    index: Mapping[str, Iterable[str]] | None = None,
) -> Cover:
    """Return the predefined-role cover of ``needed`` with the least excess.

    Args:
        needed: the permissions to cover.
        roles: role name → its permissions (the predefined catalogue).
        allowed: a predicate on (role name, permissions); roles it rejects are never chosen
            (basic roles, roles with escalation-capable permissions, deprecated roles ...).
        node_budget: search nodes before falling back to the heuristic result.
        where: for error messages (``step 'train' on gs://bucket``).
        index: permission → roles containing it (:func:`permission_index`), so only roles
            that can help are looked at; without it every role is scanned.

    Raises:
        CoverError: a needed permission is in no allowed role.
    """
    need = frozenset(needed)
    if not need:
        return Cover((), need, frozenset(), frozenset(), True, 0)
    # cov/exc per candidate: what it covers of the need, and what it adds beyond it
    cands: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    names = roles if index is None else {r for p in need for r in index.get(p, ())}
    for name in sorted(names):
        perms = roles[name]
        cov = perms & need
        if cov and (allowed is None or allowed(name, perms)):
            cands[name] = (cov, perms - need)
    covered_at_all = frozenset().union(*(c for c, _ in cands.values())) if cands else frozenset()
    missing = sorted(need - covered_at_all)
    if missing:
        raise CoverError(
            f"no allowed predefined role grants {', '.join(missing)}",
            where=where,
            fix="use --roles custom, or declare a permission that a predefined role grants",
        )
    cands = _undominated(cands)
    baseline = _baseline(need, cands)
    best = min(baseline, _greedy(need, cands), key=lambda c: _key(c, cands))
    bound = len(_excess(baseline, cands))
    search = _Search(need, cands, node_budget, best)
    exact = search.run()
    chosen = search.best
    granted = frozenset().union(*(need | cands[r][1] for r in chosen))
    return Cover(
        roles=tuple(sorted(chosen)),
        needed=need,
        granted=frozenset(granted),
        excess=frozenset(granted - need),
        exact=exact,
        bound=bound,
        explored=search.explored,
        candidates=len(cands),
    )


def permission_index(roles: Mapping[str, frozenset[str]]) -> dict[str, tuple[str, ...]]:
    """Permission → the roles that contain it (build once per catalogue, pass to
    :func:`find_cover` as ``index``)."""
    index: dict[str, list[str]] = {}
    for name, perms in roles.items():
        for perm in perms:
            index.setdefault(perm, []).append(name)
    return {perm: tuple(sorted(names)) for perm, names in index.items()}


def _excess(chosen: Iterable[str], cands: _Cands) -> frozenset[str]:
    return frozenset().union(*(cands[r][1] for r in chosen))


def _key(chosen: tuple[str, ...], cands: _Cands) -> _Key:
    return (len(_excess(chosen, cands)), len(chosen), tuple(sorted(chosen)))


def _undominated(
    cands: dict[str, tuple[frozenset[str], frozenset[str]]],
) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Drop roles another role dominates (covers at least as much with no more excess)."""
    # fewest excess first, then most coverage, then name: dominators come before the dominated
    order = sorted(cands, key=lambda n: (len(cands[n][1]), -len(cands[n][0]), n))
    kept: list[str] = []
    for name in order:
        cov, exc = cands[name]
        if not any(cov <= cands[k][0] and cands[k][1] <= exc for k in kept):
            kept.append(name)
    return {name: cands[name] for name in sorted(kept)}


def _baseline(
    need: frozenset[str], cands: Mapping[str, tuple[frozenset[str], frozenset[str]]]
) -> tuple[str, ...]:
    """For each needed permission, the candidate with the least excess that contains it."""
    chosen: set[str] = set()
    for perm in sorted(need):
        if any(perm in cands[r][0] for r in chosen):
            continue
        chosen.add(
            min(
                (r for r in cands if perm in cands[r][0]),
                key=lambda r: (len(cands[r][1]), -len(cands[r][0]), r),
            )
        )
    return tuple(sorted(chosen))


def _greedy(
    need: frozenset[str], cands: Mapping[str, tuple[frozenset[str], frozenset[str]]]
) -> tuple[str, ...]:
    """Weighted greedy set cover: least new excess per newly covered permission."""
    uncovered = set(need)
    excess: frozenset[str] = frozenset()
    chosen: list[str] = []
    while uncovered:
        best = min(
            (r for r in cands if cands[r][0] & uncovered),
            key=lambda r: (
                len(cands[r][1] - excess) / len(cands[r][0] & uncovered),
                -len(cands[r][0] & uncovered),
                r,
            ),
        )
        chosen.append(best)
        uncovered -= cands[best][0]
        excess |= cands[best][1]
    return _prune_redundant(tuple(sorted(chosen)), need, cands)


def _prune_redundant(
    chosen: tuple[str, ...],
    need: frozenset[str],
    cands: Mapping[str, tuple[frozenset[str], frozenset[str]]],
) -> tuple[str, ...]:
    """Drop roles whose coverage the others already provide (most excess first)."""
    result = list(chosen)
    for role in sorted(chosen, key=lambda r: (-len(cands[r][1]), r)):
        rest = [r for r in result if r != role]
        if rest and need <= frozenset().union(*(cands[r][0] for r in rest)):
            result = rest
    return tuple(sorted(result))


class _Search:
    """Depth-first branch and bound over candidate roles."""

    def __init__(
        self,
        need: frozenset[str],
        cands: Mapping[str, tuple[frozenset[str], frozenset[str]]],
        budget: int,
        start: tuple[str, ...],
    ) -> None:
        self.need = need
        self.cands = cands
        self.budget = budget
        self.best = start
        self.best_key = _key(start, cands)
        self.explored = 0
        self.by_perm = {p: sorted(r for r in cands if p in cands[r][0]) for p in need}

    def run(self) -> bool:
        """Search; True when it finished (the best cover is optimal)."""
        return self._dfs((), frozenset(), frozenset())

    def _dfs(
        self, chosen: tuple[str, ...], covered: frozenset[str], excess: frozenset[str]
    ) -> bool:
        self.explored += 1
        if self.explored > self.budget:
            return False
        if covered == self.need:
            key = (len(excess), len(chosen), tuple(sorted(chosen)))
            if key < self.best_key:
                self.best, self.best_key = tuple(sorted(chosen)), key
            return True
        # branch on the hardest uncovered permission (fewest roles contain it)
        perm = min(self.need - covered, key=lambda p: (len(self.by_perm[p]), p))
        options = sorted(
            self.by_perm[perm],
            key=lambda r: (len(self.cands[r][1] - excess), -len(self.cands[r][0] - covered), r),
        )
        for role in options:
            new_excess = excess | self.cands[role][1]
            # excess only grows as roles are added: cut when this can no longer win
            if (len(new_excess), len(chosen) + 1) > self.best_key[:2]:
                continue
            if not self._dfs((*chosen, role), covered | self.cands[role][0], new_excess):
                return False
        return True
