"""Known gaps found by our own red team and not closed yet, as strict expected failures.

Each test states the behaviour we want. While the gap is open the test fails and is reported
as "xfailed"; the day a change closes it, the test passes, ``strict=True`` turns that into a
failure, and whoever closed it removes the marker (and the entry in docs/threat-model.md).

None is open at the moment: the last two (a run-time value nested in a list constant pasted
into a launcher payload; a Dataflow flex launch naming another identity in its parameters) are
closed and tested in tests/test_payload_nesting.py and tests/test_launcher_identity.py.
"""
