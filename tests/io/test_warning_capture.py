"""recorded_warnings: each thread gets its own warnings, overlapping threads do not undo each other, and
nothing is swallowed afterwards (warnings.catch_warnings fails all of these when threads overlap)."""

import threading
import warnings

import pytest

from napari_nevus_seg.io.warning_capture import recorded_warnings


def _messages(caught):
    return [str(w.message) for w in caught]


def _run_in_threads(*targets):
    errors = []

    def guarded(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


@pytest.fixture
def hook():
    """A plain showwarning hook of the test's own (not pytest's recorder): collects what reaches it.
    Checks that the warnings state is what it was before, after the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = (warnings.showwarning, list(warnings.filters))
        seen = []

        def show(message, category, filename, lineno, file=None, line=None):
            seen.append(str(message))

        warnings.showwarning = show
        yield seen
        assert warnings.showwarning is show, "the showwarning hook was not given back"
        warnings.showwarning = before[0]
        assert list(warnings.filters) == before[1], "the filters were not given back"


def test_overlapping_threads_keep_their_own_warnings_and_nothing_is_lost_after(hook):
    """A enters, B enters, A leaves, then B warns and leaves: the order in which catch_warnings gives B's
    warning to the log and, when B leaves, puts A's finished recorder back for the whole process."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    got = {}

    def a():
        with recorded_warnings() as caught:
            a_in.set()
            assert b_in.wait(10)
            warnings.warn("from A", UserWarning)
        got["a"] = _messages(caught)
        a_out.set()

    def b():
        assert a_in.wait(10)
        with recorded_warnings() as caught:
            b_in.set()
            assert a_out.wait(10)
            warnings.warn("from B", UserWarning)
            warnings.warn("from B", UserWarning)      # repeated: recorded each time
        got["b"] = _messages(caught)

    _run_in_threads(a, b)
    assert got == {"a": ["from A"], "b": ["from B", "from B"]}
    assert hook == []
    warnings.warn("after both", UserWarning)       # the process's warnings reach their usual place
    assert hook == ["after both"]


def test_many_threads_at_once_each_get_exactly_their_own(hook):
    n = 6
    barrier = threading.Barrier(n)
    got = {}

    def work(i):
        def run():
            with recorded_warnings() as caught:
                for k in range(5):
                    barrier.wait(10)                   # everyone warns in the same rounds
                    warnings.warn(f"image {i} step {k}", UserWarning)
            got[i] = _messages(caught)
        return run

    _run_in_threads(*[work(i) for i in range(n)])
    assert got == {i: [f"image {i} step {k}" for k in range(5)] for i in range(n)}
    assert hook == []


def test_nested_recorders_and_a_thread_that_does_not_record(hook):
    """The innermost recorder of the warning's own thread gets it; another thread's warning, raised while
    this one records, goes where it would have gone (the hook), not into this thread's lists."""
    inside, done = threading.Event(), threading.Event()
    got = {}

    def recorder():
        with recorded_warnings() as outer:
            warnings.warn("outer 1", UserWarning)
            with recorded_warnings() as inner:
                warnings.warn("inner", UserWarning)
                inside.set()
                assert done.wait(10)
            warnings.warn("outer 2", UserWarning)
        got["inner"], got["outer"] = _messages(inner), _messages(outer)

    def other():
        assert inside.wait(10)
        warnings.warn("elsewhere", UserWarning)
        done.set()

    _run_in_threads(recorder, other)
    assert got == {"inner": ["inner"], "outer": ["outer 1", "outer 2"]}
    assert hook == ["elsewhere"]


def test_another_threads_catch_warnings_leaving_meanwhile_leaves_nothing_behind(hook):
    """F enters catch_warnings and ignores everything, W starts recording, F leaves, W warns and leaves:
    no "ignore" and no dispatcher may stay behind (a snapshot put back would drop every later warning).
    W's warning itself reaches the log (the documented limit), never a list nobody reads."""
    f_in, w_in, f_out = threading.Event(), threading.Event(), threading.Event()
    got = {}

    def f():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f_in.set()
            assert w_in.wait(10)
        f_out.set()

    def w():
        assert f_in.wait(10)
        with recorded_warnings() as caught:
            w_in.set()
            assert f_out.wait(10)
            warnings.warn("from W", UserWarning)
        got["w"] = _messages(caught)

    _run_in_threads(f, w)
    assert got["w"] + hook == ["from W"]
    warnings.warn("later", UserWarning)
    assert hook[-1] == "later"
