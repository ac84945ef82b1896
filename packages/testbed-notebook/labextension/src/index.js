// @testbed/job-parameters: JupyterLab's Create Job form (jupyter-scheduler's Jobs
// panel) opens with the notebook's parameters filled in: each name the cell tagged
// "parameters" assigns, with its default written as `run-notebook -p NAME VALUE`
// takes it. The server extension testbed.job_parameters reads the notebook
// (GET <base_url>/testbed/job-parameters?path=...); this file only fills the form.
//
// Plain JavaScript without imports: nothing to share with JupyterLab's own packages,
// so the built bundle stays a few kilobytes. It talks to jupyter-scheduler's panel
// through what that panel exposes (the main-area widget "notebook-jobs-panel", its
// content's JobsModel with jobsView and createJobModel), and stands aside whenever
// those are not what it expects.

const CREATE_COMMANDS = [
  'scheduling:create-from-notebook',
  'scheduling:create-from-filebrowser'
];
const PANEL_ID = 'notebook-jobs-panel';
const CREATE_FORM = 1; // jupyter-scheduler's JobsView.CreateForm
const ROUTE = 'testbed/job-parameters';
// How long the form is watched for a stale update of its own that drops the
// parameters (its effects write models captured before they were filled in).
const WATCH_MS = 10000;

function jobsModel(app) {
  for (const widget of app.shell.widgets('main')) {
    if (widget.id === PANEL_ID && widget.content && widget.content.model) {
      return widget.content.model;
    }
  }
  return null;
}

async function fetchParameters(settings, path) {
  const base = settings.baseUrl.endsWith('/')
    ? settings.baseUrl
    : settings.baseUrl + '/';
  const url = base + ROUTE + '?path=' + encodeURIComponent(path);
  const init = Object.assign({}, settings.init, { method: 'GET' });
  if (settings.token) {
    init.headers = { Authorization: 'token ' + settings.token };
  }
  // settings.fetch is the window's fetch: called as a method of the settings
  // object it throws "Illegal invocation"
  const response = await settings.fetch.call(window, url, init);
  if (!response.ok) {
    throw new Error(ROUTE + ' answered ' + response.status + ' for ' + path);
  }
  return response.json();
}

// Fill the form of `model` (a JobsModel) opened as `key` for `path` with
// `parameters` while it is still that form and nobody has set parameters: now, and
// again for WATCH_MS whenever a stale update of the form drops them.
function fill(model, key, path, parameters) {
  const offered = parameters
    .filter(p => p.value !== null && p.value !== undefined)
    .map(p => ({ name: p.name, value: p.value }));
  if (offered.length === 0) {
    return;
  }
  // `key`: the form this answer is for. A form opened again later, even on the same
  // notebook, has a key of its own (jupyter-scheduler's emptyCreateJobModel) and
  // asks for its own answer.
  const apply = () => {
    const form = model.createJobModel;
    if (
      model.jobsView !== CREATE_FORM ||
      !form ||
      form.key !== key ||
      form.inputFile !== path
    ) {
      return false;
    }
    if (form.parameters === undefined) {
      model.createJobModel = Object.assign({}, form, {
        parameters: offered.map(p => Object.assign({}, p))
      });
    }
    return true;
  };
  if (!apply()) {
    return;
  }
  const onChange = () => {
    if (!apply()) {
      stop();
    }
  };
  const stop = () => model.stateChanged.disconnect(onChange);
  model.stateChanged.connect(onChange);
  setTimeout(stop, WATCH_MS);
}

const plugin = {
  id: '@testbed/job-parameters:plugin',
  description:
    "Fills JupyterLab's Create Job form with the notebook's parameters.",
  autoStart: true,
  activate: app => {
    const settings = app.serviceManager.serverSettings;
    app.commands.commandExecuted.connect((_, args) => {
      if (!CREATE_COMMANDS.includes(args.id)) {
        return;
      }
      Promise.resolve(args.result)
        .then(async () => {
          const model = jobsModel(app);
          const form = model && model.createJobModel;
          const path = form && form.inputFile;
          if (!path || !path.endsWith('.ipynb')) {
            return;
          }
          const answer = await fetchParameters(settings, path);
          if (answer.problem) {
            console.info('@testbed/job-parameters:', answer.problem);
          }
          fill(model, form.key, path, answer.parameters || []);
        })
        .catch(reason => {
          console.warn('@testbed/job-parameters: form not filled:', reason);
        });
    });
  }
};

export default plugin;
