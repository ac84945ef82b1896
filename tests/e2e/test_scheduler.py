"""Scheduler jobs as a new researcher meets them (issue 16, item 6): a job's parameter
``experiment`` typed as ``exp-005`` (bare, as in ``run-notebook -p experiment exp-005``)
reaches the notebook as the string "exp-005"; the job's output notebook lies in the
visible ``jobs/`` folder of the notebook directory without anyone pressing the Jobs
panel's download button, and opens from the panel's link; a failing job says why in
plain text, the error first.

Through jupyter-scheduler's REST API (what the JupyterLab Jobs panel calls), with the
cookies of a researcher logged in through the testbed login in Chromium:
``GET scheduler/runtime_environments``, ``POST scheduler/jobs`` (``input_uri`` relative
to the notebook directory, ``runtime_environment_name``, ``output_formats``,
``parameters`` as text, as the Create Job form sends them), ``GET scheduler/jobs/<id>``
(``status``, ``status_message``, ``downloaded``, ``job_files``), then the output notebook
through the contents API; then in JupyterLab, the file browser at ``jobs/`` and the
Jobs panel (its launcher card) with the output notebook's link. What the test creates
is removed at the end.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath

import pytest
from conftest import ALICE, open_context, shot
from test_browser import login, xsrf

NOTEBOOK = "scheduler-e2e.ipynb"
#: A job's process and kernel start in the researcher's container on a loaded station.
JOB_DEADLINE_S = 300
#: (jupyter-scheduler records a new job as STOPPED until its process starts it: not an end)
ENDED = ("COMPLETED", "FAILED")
OUTPUT_FOLDER = "jobs"


def job_folder(job_id: str) -> str:
    """The job's folder in jobs/, as jupyter-scheduler names it (create_output_directory)."""
    return f"{PurePosixPath(NOTEBOOK).stem}-{job_id}"


def notebook() -> dict:
    cell = {"cell_type": "code", "execution_count": None, "outputs": []}
    return {
        "cells": [
            {
                **cell,
                "id": "parameters",
                "metadata": {"tags": ["parameters"]},
                "source": 'experiment = "exp-001"\n',
            },
            {
                **cell,
                "id": "body",
                "metadata": {},
                "source": 'if experiment == "fail":\n'
                '    raise ValueError(f"deliberate failure for {experiment}")\n'
                'print(f"experiment={experiment!r} type={type(experiment).__name__}")\n',
            },
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lab(browser, base_url, alice):
    """Alice logged in to her JupyterLab, her server's URL, and ``call(method, path, body)``
    that reaches her server with her cookies and xsrf token; the ids of the jobs the test
    creates. Removes the test's notebook, jobs and outputs at the end."""
    ctx = open_context(browser)
    page = ctx.new_page()
    login(page, base_url, ALICE, alice)
    server = f"{base_url}/jupyter/user/{alice}"

    def call(method: str, path: str, body: dict | None = None):
        return page.request.fetch(
            f"{server}/{path}",
            method=method,
            data=body,
            headers={"X-XSRFToken": xsrf(page, alice), "Content-Type": "application/json"},
        )

    r = call("PUT", f"api/contents/{NOTEBOOK}", {"type": "notebook", "content": notebook()})
    assert r.status in (200, 201), f"writing {NOTEBOOK}: {r.status} {r.text()}"
    jobs: list[str] = []
    yield page, server, call, jobs
    sessions = call("GET", "api/sessions")  # the kernel of the output notebook opened
    for session in sessions.json() if sessions.ok else []:
        if session.get("path", "").startswith(f"{OUTPUT_FOLDER}/{job_folder('')}"):
            call("DELETE", f"api/sessions/{session['id']}")
    for job_id in jobs:
        call("DELETE", f"scheduler/jobs/{job_id}")  # its staging folder and database record
        folder = f"{OUTPUT_FOLDER}/{job_folder(job_id)}"
        listing = call("GET", f"api/contents/{folder}")
        if listing.ok:
            for item in listing.json()["content"]:
                call("DELETE", f"api/contents/{item['path']}")
            call("DELETE", f"api/contents/{folder}")
    call("DELETE", f"api/contents/{NOTEBOOK}")
    ctx.close()


def create_job(call, jobs: list[str], parameters: dict[str, str]) -> str:
    r = call("GET", "scheduler/runtime_environments")
    assert r.status == 200, f"runtime environments: {r.status} {r.text()}"
    environment = r.json()[0]["name"]
    r = call(
        "POST",
        "scheduler/jobs",
        {
            "name": f"e2e-{parameters['experiment']}",
            "input_uri": NOTEBOOK,
            "runtime_environment_name": environment,
            "output_formats": ["ipynb", "html"],
            "parameters": parameters,
        },
    )
    assert r.status == 200, f"creating a job: {r.status} {r.text()}"
    jobs.append(r.json()["job_id"])
    return jobs[-1]


def wait_ended(call, job_ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + JOB_DEADLINE_S
    while True:
        jobs = {}
        for job_id in job_ids:
            r = call("GET", f"scheduler/jobs/{job_id}")
            assert r.status == 200, f"job {job_id}: {r.status} {r.text()}"
            jobs[job_id] = r.json()
        if all(job["status"] in ENDED for job in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, (
            f"jobs still running after {JOB_DEADLINE_S} s: "
            f"{[(j['name'], j['status']) for j in jobs.values()]}"
        )
        time.sleep(1)


def output_notebook(job: dict) -> str:
    paths = [f["file_path"] for f in job["job_files"] if f["file_format"] == "ipynb"]
    assert paths and paths[0], f"no output notebook among {job['job_files']}"
    return paths[0]


def outputs(call, path: str) -> str:
    """What the notebook at ``path`` printed and the errors it raised, as text."""
    r = call("GET", f"api/contents/{path}?content=1")
    assert r.status == 200, f"{path}: {r.status} {r.text()}"
    texts = []
    for cell in r.json()["content"]["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append("".join(out["text"]))
            if out.get("output_type") == "error":
                texts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(texts)


def test_a_job_takes_a_bare_value_as_run_notebook_does_and_its_output_is_in_jobs(lab):
    page, server, call, jobs = lab
    ok = create_job(call, jobs, {"experiment": "exp-005"})
    failing = create_job(call, jobs, {"experiment": "fail"})
    ended = wait_ended(call, [ok, failing])

    job = ended[ok]
    assert job["status"] == "COMPLETED", job.get("status_message")
    # "exp-005" reached the notebook as a string (not `experiment = exp-005`, a SyntaxError)
    path = output_notebook(job)
    assert "experiment='exp-005' type=str" in outputs(call, path)
    # in the visible folder, linked by the Jobs panel without a download first
    parts = PurePosixPath(path).parts
    assert parts[:2] == (OUTPUT_FOLDER, job_folder(ok)), path
    assert not [p for p in parts if p.startswith(".")], path
    assert job["downloaded"] is True, job["job_files"]
    listing = call("GET", f"api/contents/{OUTPUT_FOLDER}")
    assert job_folder(ok) in [item["name"] for item in listing.json()["content"]]

    # a failing job: the notebook's error first, in plain text; its output is there too
    job = ended[failing]
    assert job["status"] == "FAILED", job
    message = job["status_message"]
    assert message.startswith("ValueError: deliberate failure for fail"), message
    assert "\x1b" not in message, message
    assert "ValueError: deliberate failure for fail" in outputs(call, output_notebook(job))

    # In JupyterLab: the file browser shows the job's folder under jobs/, and the Jobs
    # panel links to the output notebook (no download button first), which opens and
    # shows what the job printed.
    page.goto(f"{server}/lab/tree/{OUTPUT_FOLDER}?reset")
    files = page.locator(".jp-DirListing-content")
    files.get_by_text(job_folder(ok), exact=True).wait_for(timeout=120_000)
    page.locator(".jp-LauncherCard", has_text="Jobs").click()
    page.locator(f"a[href*='/{job_folder(ok)}/']", has_text="Notebook").click()
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-OutputArea-output", has_text="experiment='exp-005' type=str").first.wait_for(
        timeout=120_000
    )
    shot(page, "30-scheduler-job-output-opened")


def test_the_create_job_form_opens_with_the_notebooks_parameters(lab):
    """Create Job from the file browser's context menu: the form lists the parameters
    cell's names with their defaults as run-notebook -p text (testbed.job_parameters);
    a value edited there is what the job's notebook gets."""
    page, server, call, jobs = lab
    page.goto(f"{server}/lab?reset")
    name = page.locator(".jp-DirListing-itemText", has_text=NOTEBOOK)
    name.wait_for(timeout=120_000)
    name.click(button="right")
    page.locator(".lm-Menu-item", has_text="Create Job").click()
    param_name = page.locator("input[name='parameter-0-name']")
    param_value = page.locator("input[name='parameter-0-value']")
    param_name.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector(\"input[name='parameter-0-value']\")?.value === 'exp-001'",
        timeout=30_000,
    )
    assert param_name.input_value() == "experiment"
    assert page.locator("input[name='parameter-1-name']").count() == 0  # one parameter
    shot(page, "31-create-job-form-filled")

    param_value.fill("exp-007")
    before = {j["job_id"] for j in call("GET", "scheduler/jobs").json()["jobs"]}
    page.locator(".jp-notebook-jobs-panel button", has_text="Create").click()
    deadline = time.monotonic() + 60
    while True:
        created = [
            j for j in call("GET", "scheduler/jobs").json()["jobs"] if j["job_id"] not in before
        ]
        if created:
            break
        assert time.monotonic() < deadline, "the Create Job form made no job in 60 s"
        time.sleep(1)
    (job,) = created
    jobs.append(job["job_id"])
    assert job["parameters"] == {"experiment": "exp-007"}, job
    ended = wait_ended(call, [job["job_id"]])[job["job_id"]]
    assert ended["status"] == "COMPLETED", ended.get("status_message")
    assert "experiment='exp-007' type=str" in outputs(call, output_notebook(ended))
