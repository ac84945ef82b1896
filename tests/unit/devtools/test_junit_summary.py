import pytest

from testbed_devtools.junit_summary import load_allow_list, main, node_id, read

SUITE = (
    '<testsuites><testsuite name="a" tests="{t}" failures="{f}" errors="{e}" skipped="{s}">'
    "{cases}</testsuite></testsuites>"
)
PASSED = '<testcase classname="tests.unit.x.test_a" name="test_ok{i}" time="0.1"/>'
SKIPPED = (
    '<testcase classname="{classname}" name="{name}" time="0">'
    '<skipped type="pytest.skip" message="{reason}">{classname}:7: {reason}</skipped>'
    "</testcase>"
)


def write(tmp_path, name, t, f=0, e=0, skips=()):
    """A pytest-style report: t tests, f failures, e errors, the given skips
    ((classname, name, reason) each), the rest passed."""
    cases = [SKIPPED.format(classname=c, name=n, reason=r) for c, n, r in skips]
    cases += [PASSED.format(i=i) for i in range(t - len(skips))]
    p = tmp_path / f"{name}.xml"
    p.write_text(SUITE.format(t=t, f=f, e=e, s=len(skips), cases="".join(cases)))
    return p


def allow(tmp_path, text="[]\n"):
    p = tmp_path / "skips.yml"
    p.write_text(text)
    return p


AUDIO_SKIP = ("tests.unit.sim.test_sim_audio", "test_speech[ue-01]", "needs espeak-ng")


def test_read_counts_errors_as_failures(tmp_path):
    t = read(write(tmp_path, "x", 10, f=1, e=2, skips=[AUDIO_SKIP] * 3))
    assert (t.tests, t.failed, t.skipped, t.passed) == (10, 3, 3, 4)
    assert [s.test for s in t.skips] == ["tests/unit/sim/test_sim_audio.py::test_speech[ue-01]"] * 3
    assert {s.message for s in t.skips} == {"needs espeak-ng"}


@pytest.mark.parametrize(
    ("classname", "name", "want"),
    [
        ("tests.unit.x.test_y", "test_a[p.q]", "tests/unit/x/test_y.py::test_a[p.q]"),
        ("tests.unit.x.test_y.TestZ", "test_a", "tests/unit/x/test_y.py::TestZ::test_a"),
        (
            "test_reverse_proxy",
            "test_b[docker://tb-x]",
            "test_reverse_proxy.py::test_b[docker://tb-x]",
        ),
    ],
)
def test_node_id_from_junit_names(classname, name, want):
    assert node_id(classname, name) == want


def test_main_totals_and_exit_code(tmp_path, capsys):
    a = write(tmp_path, "unit", 5)
    b = write(tmp_path, "molecule-docker", 6)
    assert main([str(a), str(b), "--allowed-skips", str(allow(tmp_path))]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "tests: 11 passed, 0 failed, 0 skipped"
    c = write(tmp_path, "e2e", 2, f=1)
    assert main([str(a), str(c), "--allowed-skips", str(allow(tmp_path))]) == 1


def test_main_fails_when_nothing_ran(tmp_path):
    assert main([str(write(tmp_path, "empty", 0)), "--allowed-skips", str(allow(tmp_path))]) == 1


def test_skip_not_in_the_allow_list_fails_naming_test_reason_and_file(tmp_path, capsys):
    report = write(tmp_path, "unit", 4, skips=[AUDIO_SKIP])
    skips = allow(tmp_path)
    assert main([str(report), "--allowed-skips", str(skips)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "tests: 3 passed, 0 failed, 1 skipped"
    assert "tests/unit/sim/test_sim_audio.py::test_speech[ue-01]" in err
    assert "needs espeak-ng" in err
    assert str(skips) in err


def test_listed_skip_passes_and_is_printed_with_its_reason(tmp_path, capsys):
    report = write(tmp_path, "unit", 4, skips=[AUDIO_SKIP])
    skips = allow(
        tmp_path,
        '- test: "tests/unit/sim/test_sim_audio.py::test_speech[*]"\n'
        '  reason: "espeak-ng is not packaged for this CI image"\n',
    )
    assert main([str(report), "--allowed-skips", str(skips)]) == 0
    out = capsys.readouterr().out
    assert "allowed: espeak-ng is not packaged for this CI image" in out
    assert "test_speech[ue-01]: needs espeak-ng" in out


def test_pattern_brackets_are_literal_and_must_match_the_whole_id(tmp_path):
    report = write(tmp_path, "unit", 2, skips=[AUDIO_SKIP])
    for pattern in (
        "tests/unit/sim/test_sim_audio.py::test_speech[u]",  # not a character class
        "tests/unit/sim/test_sim_audio.py::test_speech",  # a prefix is not the test
        "test_sim_audio.py::*",  # nor is a suffix of the path
    ):
        skips = allow(tmp_path, f'- test: "{pattern}"\n  reason: "r"\n')
        assert main([str(report), "--allowed-skips", str(skips)]) == 1, pattern


def test_skip_counted_but_not_listed_in_the_report_fails(tmp_path):
    p = tmp_path / "odd.xml"
    p.write_text(SUITE.format(t=3, f=0, e=0, s=1, cases=PASSED.format(i=0)))
    assert main([str(p), "--allowed-skips", str(allow(tmp_path))]) == 1


@pytest.mark.parametrize(
    "text",
    [
        "- test: x\n",  # no reason
        '- test: x\n  reason: ""\n',  # empty reason
        "- test: x\n  reason: r\n  extra: 1\n",  # misspelled or extra key
        "test: x\nreason: r\n",  # not a list
        "- [x, r]\n",
    ],
)
def test_malformed_allow_list_is_refused(tmp_path, capsys, text):
    skips = allow(tmp_path, text)
    with pytest.raises(ValueError, match="skips.yml"):
        load_allow_list(skips)
    assert main([str(write(tmp_path, "unit", 1)), "--allowed-skips", str(skips)]) == 2
    assert "skips.yml" in capsys.readouterr().err


def test_missing_allow_list_is_an_error(tmp_path):
    report = write(tmp_path, "unit", 1)
    assert main([str(report), "--allowed-skips", str(tmp_path / "nope.yml")]) == 2


def test_the_repository_allow_list_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    for entry in load_allow_list(root / "tests" / "skips.yml"):
        assert entry.reason
