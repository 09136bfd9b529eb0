"""The live fetch's threads are kept between checks: what that must not change."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_gcp_live import fetch, world
from zt_pipelines.emulator import Emulator
from zt_pipelines.policy.snapshot import Snapshot
from zt_pipelines.policy.snapshot_file import dump_snapshot


@pytest.fixture()
def emulator() -> Iterator[Emulator]:
    """A running emulator over the live tests' world."""
    with Emulator(world()) as emu:
        yield emu


def _canonical(value: Any) -> Any:
    """A dumped snapshot without the order reads happened to land in."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k != "fetchedAt"}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    return value


def _same(a: Snapshot, b: Snapshot) -> bool:
    return bool(_canonical(dump_snapshot(a)) == _canonical(dump_snapshot(b)))


def test_checks_at_the_same_time_share_the_threads_and_answer_alike(
    emulator: Emulator,
) -> None:
    alone = fetch(emulator)
    assert alone.unreadable == ()
    results: list[Snapshot] = []
    errors: list[BaseException] = []

    def check() -> None:
        try:
            results.append(fetch(emulator))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == 4
    assert all(_same(alone, other) for other in results)


def test_a_small_pool_bound_still_reads_everything(emulator: Emulator) -> None:
    assert _same(fetch(emulator, max_workers=1), fetch(emulator))


def _child(address: str, conn: Any) -> None:
    with Emulator(world()) as emu:  # the parent's emulator is not ours to use after a fork
        del address
        snap = fetch(emu)
        conn.send((len(snap.unreadable), len(snap.nodes)))


def test_a_forked_child_checks_with_threads_of_its_own(emulator: Emulator) -> None:
    # checks at the same time leave the parent's pool with more idle threads than one check
    # starts reads: a child that believed them would wait for threads that it does not have
    parent_snap = fetch(emulator)
    threads = [threading.Thread(target=fetch, args=(emulator,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ctx = multiprocessing.get_context("fork")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_child, args=(emulator.address, there), daemon=True)
    child.start()
    assert here.poll(60), "the child's check never finished (threads of the parent's pool?)"
    unreadable, nodes = here.recv()
    child.join(10)
    assert unreadable == 0
    assert nodes == len(parent_snap.nodes)


def test_the_last_progress_report_comes_before_the_check_returns(emulator: Emulator) -> None:
    reports: list[tuple[int, int]] = []
    returned = threading.Event()
    late: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        if returned.is_set():
            late.append((done, total))
        reports.append((done, total))

    fetch(emulator, progress=progress)
    returned.set()
    assert reports
    assert max(done for done, _ in reports) == max(total for _, total in reports)
    assert late == []
