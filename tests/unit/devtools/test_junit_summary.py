from testbed_devtools.junit_summary import main, read

SUITE = (
    '<testsuites><testsuite name="a" tests="{t}" failures="{f}" errors="{e}" skipped="{s}">'
    "</testsuite></testsuites>"
)


def write(tmp_path, name, t, f=0, e=0, s=0):
    p = tmp_path / f"{name}.xml"
    p.write_text(SUITE.format(t=t, f=f, e=e, s=s))
    return p


def test_read_counts_errors_as_failures(tmp_path):
    t = read(write(tmp_path, "x", 10, f=1, e=2, s=3))
    assert (t.tests, t.failed, t.skipped, t.passed) == (10, 3, 3, 4)


def test_main_totals_and_exit_code(tmp_path, capsys):
    a = write(tmp_path, "unit", 5)
    b = write(tmp_path, "molecule-docker", 6, s=1)
    assert main([str(a), str(b)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "tests: 10 passed, 0 failed, 1 skipped"
    c = write(tmp_path, "e2e", 2, f=1)
    assert main([str(a), str(c)]) == 1


def test_main_fails_when_nothing_ran(tmp_path):
    assert main([str(write(tmp_path, "empty", 0))]) == 1
