"""testbed.qoe: finding an experiment's NIST tests from its document (no NIST code).

The evaluation itself (NIST's classes, NumPy 2) is tested in tests/nist/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import qoe
from testbed.errors import NoNistTest, RecordingMissing, TestbedError


def _doc(tmp_path: Path, **nist) -> dict:
    return {"_id": "exp-007", "title": "t", "nist": nist}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x\n")
    return path


def test_m2e_test_is_found_relative_to_the_media_mount(tmp_path):
    _touch(tmp_path / "exp-007/nist/m2e/A_M2E/A_M2E.csv")
    doc = _doc(
        tmp_path,
        m2e={"csv": "exp-007/nist/m2e/A_M2E/A_M2E.csv", "m2e_truth_ms": 250.0},
    )
    test = qoe.nist_test(doc, "m2e", tmp_path)
    assert test.experiment_id == "exp-007"
    assert test.csvs == [tmp_path / "exp-007/nist/m2e/A_M2E/A_M2E.csv"]
    assert test.wav_dir == tmp_path / "exp-007/nist/m2e/A_M2E/wav"  # NIST's layout
    assert test.meta["m2e_truth_ms"] == 250.0


def test_access_test_lists_its_csvs(tmp_path):
    names = [f"exp-007/nist/access_time/B/B_{w}.csv" for w in ("F1_b9_w1_bed", "M4_b14_w1_not")]
    for name in names:
        _touch(tmp_path / name)
    doc = _doc(tmp_path, access_time={"csvs": names, "wav_dir": "exp-007/nist/access_time/B/wav"})
    test = qoe.nist_test(doc, "access_time", tmp_path)
    assert test.csvs == [tmp_path / n for n in names]
    assert test.wav_dir == tmp_path / "exp-007/nist/access_time/B/wav"


@pytest.mark.parametrize("doc", [{"_id": "exp-007"}, {"_id": "exp-007", "nist": {}}])
def test_no_test_is_a_no_nist_test_error(tmp_path, doc):
    with pytest.raises(NoNistTest, match="'exp-007' has no NIST mouth-to-ear"):
        qoe.nist_test(doc, "m2e", tmp_path)


def test_missing_file_names_it_and_the_mount(tmp_path):
    doc = _doc(tmp_path, m2e={"csv": "exp-007/nist/m2e/A_M2E/A_M2E.csv"})
    with pytest.raises(RecordingMissing, match=r"A_M2E\.csv does not exist.*TESTBED_MEDIA_DIR"):
        qoe.nist_test(doc, "m2e", tmp_path)


def test_document_without_csv_is_reported(tmp_path):
    with pytest.raises(TestbedError, match=r"nist\.m2e names no CSV"):
        qoe.nist_test(_doc(tmp_path, m2e={"wav_dir": "x"}), "m2e", tmp_path)


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="m2e, access_time"):
        qoe.nist_test(_doc(tmp_path), "intelligibility", tmp_path)


def test_helpers_name_the_experiments_that_have_a_test(monkeypatch, tmp_path):
    monkeypatch.setattr(qoe.data, "experiment", lambda exp_id: {"_id": exp_id})
    monkeypatch.setattr(qoe.data, "media_dir", lambda: tmp_path)
    seen = []

    def ids(query):
        seen.append(query)
        return ["exp-001", "exp-003"]

    monkeypatch.setattr(qoe.data, "experiment_ids", ids)
    with pytest.raises(NoNistTest) as info:
        qoe.m2e("exp-005")
    message = str(info.value)
    assert "'exp-005' has no NIST mouth-to-ear (M2E) test" in message
    assert "Experiments with one (2): exp-001, exp-003." in message
    assert "testbed.qoe.m2e(<one of them>)" in message
    assert info.value.having == ["exp-001", "exp-003"]
    assert seen == [{"nist.m2e": {"$exists": True}}]
    with pytest.raises(NoNistTest, match=r"access-time test\. Experiments with one"):
        qoe.access_delay("exp-005")


def test_no_experiment_has_one(monkeypatch, tmp_path):
    monkeypatch.setattr(qoe.data, "experiment", lambda exp_id: {"_id": exp_id})
    monkeypatch.setattr(qoe.data, "media_dir", lambda: tmp_path)
    monkeypatch.setattr(qoe.data, "experiment_ids", lambda query: [])
    with pytest.raises(NoNistTest, match="No experiment in the database has one"):
        qoe.m2e("exp-005")


def test_alpha_is_checked_before_anything_is_read():
    with pytest.raises(ValueError, match="NIST uses 0.9"):
        qoe.access_delay("exp-001", alpha=1.0)
