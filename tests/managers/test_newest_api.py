"""The newest standard manager API, on every Python plait supports (issue 15, item 3).

``SyncManager.set()`` and its ``SetProxy``, the list proxy's ``clear``/``copy``, the dict
proxy's ``fromkeys``, ``|``, ``|=`` and ``reversed``. Each scenario runs on plait and,
where this Python's standard library has the feature, on the standard library too, and
both must give the results written in the test. A family that lacks the feature: the
standard library skips (this Python is older than it), plait is a strict xfail (plait
must have it on every version: it fails the day the feature comes, until its mark
goes).
"""

from __future__ import annotations

import multiprocessing.managers

import pytest

import plait.managers

from .conftest import PLAIT, STANDARD

pytestmark = pytest.mark.timeout(60)


def _has_set(managers) -> bool:
    return hasattr(managers.SyncManager, "set")


def _list_has_clear_and_copy(managers) -> bool:
    return {"clear", "copy"} <= set(managers.ListProxy._exposed_)


def _dict_has_union_and_fromkeys(managers) -> bool:
    exposed = set(managers.DictProxy._exposed_)
    return {"fromkeys", "__or__", "__ror__", "__ior__", "__reversed__"} <= exposed


def families(has):
    """The standard family (skipped where it lacks the feature) and plait's (a strict
    xfail while plait lacks it)."""
    return [
        pytest.param(STANDARD, id="multiprocessing"),
        pytest.param(
            PLAIT,
            id="plait",
            marks=pytest.mark.xfail(
                not has(plait.managers),
                strict=True,
                reason="plait.managers.sync lacks it (the proxies live in sync.py)",
            ),
        ),
    ]


def _needs(family, has, what: str) -> None:
    if family is STANDARD and not has(multiprocessing.managers):
        pytest.skip(f"the standard library of this Python has no {what}")


@pytest.mark.parametrize("family", families(_has_set))
def test_sync_manager_set(family, plait_no_leaks):
    _needs(family, _has_set, "SyncManager.set()")
    with family.manager() as m:
        s = m.set([1, 2, 3])
        assert type(s).__name__ == "SetProxy"
        s.add(4)
        s.discard(1)
        assert (len(s), 2 in s, 1 in s) == (3, True, False)
        before = s
        s |= {5, 6}
        s &= {2, 3, 4, 5, 6, 9}
        s -= {2}
        s ^= {3, 7}
        assert s is before  # the in-place operators keep the proxy
        assert s.copy() == {4, 5, 6, 7}
        assert (s | {10}, {10} | s) == ({4, 5, 6, 7, 10}, {4, 5, 6, 7, 10})
        assert (s & {4, 8}, {4, 8} & s) == ({4}, {4})
        assert (s - {4}, {4, 8} - s) == ({5, 6, 7}, {8})
        assert (s ^ {4, 8}, {4, 8} ^ s) == ({5, 6, 7, 8}, {5, 6, 7, 8})
        assert (s <= {4, 5, 6, 7}, s < {4, 5, 6, 7}, s >= {4}, s > {4, 5, 6, 7}) == (
            True,
            False,
            True,
            False,
        )
        assert s.union([1]) == {1, 4, 5, 6, 7} and s.isdisjoint({1})
        assert sorted(iter(s)) == [4, 5, 6, 7]
        s.difference_update({4})
        s.remove(5)
        assert sorted([s.pop(), s.pop()]) == [6, 7]
        with pytest.raises(KeyError):
            s.pop()
        s.update("ab")
        s.clear()
        assert len(s) == 0
        del s, before


@pytest.mark.parametrize("family", families(_list_has_clear_and_copy))
def test_list_proxy_clear_and_copy(family, plait_no_leaks):
    _needs(family, _list_has_clear_and_copy, "ListProxy.clear()/copy()")
    with family.manager() as m:
        lst = m.list([1, [2], 3])
        copied = lst.copy()
        assert type(copied) is list and copied == [1, [2], 3]
        lst.clear()
        assert (len(lst), lst[:], copied) == (0, [], [1, [2], 3])
        lst.append(4)
        assert lst.copy() == [4]
        del lst


@pytest.mark.parametrize("family", families(_dict_has_union_and_fromkeys))
def test_dict_proxy_fromkeys_union_and_reversed(family, plait_no_leaks):
    _needs(family, _dict_has_union_and_fromkeys, "DictProxy |, |=, fromkeys, reversed")
    with family.manager() as m:
        d = m.dict(a=1, b=2)
        made = d.fromkeys(["x", "y"], 0)
        assert type(made) is dict and made == {"x": 0, "y": 0}
        assert d.copy() == {"a": 1, "b": 2}  # fromkeys makes a new dict
        merged = d | {"b": 20, "c": 3}
        assert type(merged) is dict and merged == {"a": 1, "b": 20, "c": 3}
        assert {"z": 0, "a": 9} | d == {"z": 0, "a": 1, "b": 2}
        before = d
        d |= {"b": 20, "c": 3}
        d |= [("d", 4)]  # |= takes pairs, as update does
        assert d is before
        assert d.copy() == {"a": 1, "b": 20, "c": 3, "d": 4}
        assert list(reversed(d)) == ["d", "c", "b", "a"]
        with pytest.raises(TypeError):
            d | [("e", 5)]  # | takes only mappings, as on a dict
        del d, before


@pytest.mark.xfail(
    not _has_set(plait.managers),
    strict=True,
    reason="plait.managers.sync lacks SyncManager.set()",
)
def test_set_proxy_in_place_operators_take_only_sets_as_a_set_does(no_leaks):
    """``s |= [1]`` raises ``TypeError`` on a set, and on plait's proxy of one (the
    standard library's proxy sends it to the server and drops the ``NotImplemented``
    that comes back: nothing changes and nothing is said)."""
    with plait.managers.SyncManager() as m:
        s = m.set({1})
        for bad in ([2], "2", {2: 2}):
            with pytest.raises(TypeError):
                s |= bad
            with pytest.raises(TypeError):
                s -= bad
        s |= frozenset({2})
        assert s.copy() == {1, 2}
        del s
