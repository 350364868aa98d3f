/**
 * @sciplat/lab: the sciplat JupyterLab extension (glue only; the logic lives in the plain
 * modules `menus`, `schemaform`, `status`, `filetypes`, `flows`, `errors`).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { IStatusBar } from '@jupyterlab/statusbar';
import { CommandToolbarButton } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { makeRequester } from './api';
import { CommandIDs } from './commandids';
import { errorMessage } from './errors';
import { isNotebook, portalAccepts } from './filetypes';
import { copyTutorial, ExistsChoice, runWithParameters, saveAllAndExit, sendToPortal } from './flows';
import { openFrame } from './frames';
import { DynamicMenu } from './menuwidgets';
import {
  loadingMenu,
  queriesErrorMenu,
  queriesMenu,
  tutorialsErrorMenu,
  tutorialsMenu
} from './menus';
import { fieldsFromSchema, RawValue, validateForm } from './schemaform';
import {
  diskFraction,
  memoryFraction,
  STATUS_UNAVAILABLE,
  statusText,
  statusTooltip
} from './status';
import type {
  LabStatus,
  QueryRecord,
  Requester,
  RunSchemaAnswer,
  StartupProblem,
  WorkspaceUsage
} from './types';
import { problemsBody, RunForm, StatusWidget, textBody } from './widgets';

const PORTAL_TAB = 'sciplat-portal';
const STATUS_INTERVAL = 10_000;
const USAGE_MAX_AGE = 60_000;
const RUN_POLL_INTERVAL = 2_000;
const RUN_TIMEOUT = 30 * 60_000;
const SCHEMA_TTL = 30_000;
const QUERIES_MAX_AGE = 5_000;
const QUERIES_INTERVAL = 60_000;

type Args = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

async function openPortal(app: JupyterFrontEnd, request: Requester, url?: string): Promise<void> {
  const target = url || String((await request('GET', 'portal')).url);
  openFrame(app, PORTAL_TAB, 'Portal', target, 'sciplat-portal-frame');
}

/** The file selected in the default file browser, if any (first of several). */
function selectedPath(browser: IDefaultFileBrowser | null): string {
  if (!browser) {
    return '';
  }
  for (const item of browser.selectedItems()) {
    if (item.type !== 'directory') {
      return item.path;
    }
  }
  return '';
}

/** The path of the notebook in the current main-area tab, if it is one. */
function currentNotebookPath(app: JupyterFrontEnd): string {
  const widget = app.shell.currentWidget;
  if (widget instanceof DocumentWidget && isNotebook(widget.context.path)) {
    return widget.context.path;
  }
  return '';
}

/** The path of the document open in the main-area tab `id` (follows renames). */
function documentPath(app: JupyterFrontEnd, id: string): string {
  for (const widget of app.shell.widgets('main')) {
    if (widget.id === id && widget instanceof DocumentWidget) {
      return widget.context.path;
    }
  }
  return '';
}

function setupTutorials(app: JupyterFrontEnd, request: Requester, menu: DynamicMenu): () => void {
  const { commands } = app;
  const load = async () => {
    try {
      const answer = await request('GET', 'tutorials');
      menu.setEntries(tutorialsMenu(answer.sections ?? []));
    } catch (err) {
      menu.setEntries(tutorialsErrorMenu(err));
    }
  };
  commands.addCommand(CommandIDs.openTutorial, {
    label: args => str(args.title) || str(args.path) || 'Open tutorial',
    caption: args => `Open your own copy of ${str(args.path)}`,
    dataset: args => ({ testid: `sciplat-tutorial:${str(args.path)}` }),
    execute: async args => {
      try {
        const target = await copyTutorial(request, str(args.path), askExisting);
        if (target) {
          await commands.execute('docmanager:open', { path: target });
        }
      } catch (err) {
        await showErrorMessage('Cannot open the tutorial', errorMessage(err));
      }
    }
  });
  commands.addCommand(CommandIDs.tutorialsPlaceholder, {
    label: args => str(args.label),
    isEnabled: () => false,
    dataset: args => ({ testid: `sciplat-tutorials-${str(args.kind) || 'empty'}` }),
    execute: () => undefined
  });
  commands.addCommand(CommandIDs.refreshTutorials, {
    label: 'Refresh',
    dataset: { testid: 'sciplat-tutorials-refresh' },
    execute: load
  });
  return () => void load();
}

async function askExisting(existing: string, message: string): Promise<ExistsChoice> {
  const result = await showDialog({
    title: 'You already have a copy',
    body: textBody(
      `${message || 'You already have a copy of this tutorial'} (${existing}).`,
      'sciplat-tutorial-exists'
    ),
    buttons: [
      Dialog.cancelButton({ label: 'Cancel' }),
      Dialog.warnButton({ label: 'Replace it with a fresh copy' }),
      Dialog.okButton({ label: 'Open it' })
    ]
  });
  if (!result.button.accept) {
    return 'cancel';
  }
  return result.button.label === 'Open it' ? 'open' : 'replace';
}

function setupQueries(
  app: JupyterFrontEnd,
  request: Requester,
  menu: DynamicMenu,
  menuBar: Widget | null
): void {
  const { commands } = app;
  let loadedAt = 0;
  let loading: Promise<void> | null = null;
  const load = () => {
    if (!loading) {
      loading = (async () => {
        try {
          const answer = await request('GET', 'queries');
          menu.setEntries(queriesMenu((answer.queries ?? []) as QueryRecord[]));
        } catch (err) {
          menu.setEntries(queriesErrorMenu(err));
        } finally {
          loadedAt = Date.now();
          loading = null;
        }
      })();
    }
    return loading;
  };
  const loadIfStale = () => {
    if (Date.now() - loadedAt > QUERIES_MAX_AGE) {
      void load();
    }
  };
  menu.onOpen = loadIfStale;
  menuBar?.node.addEventListener('pointerenter', loadIfStale);
  // Starts at once (Poll's `auto`), then every interval while the page is visible.
  new Poll({
    factory: load,
    frequency: { interval: QUERIES_INTERVAL, backoff: false },
    standby: 'when-hidden',
    name: 'sciplat:queries'
  });
  commands.addCommand(CommandIDs.openQueryNotebook, {
    label: 'Open as notebook',
    caption: args => `A notebook that fetches the result of job ${str(args.job_id)}`,
    dataset: args => ({ testid: `sciplat-query-notebook:${str(args.job_id)}` }),
    execute: async args => {
      try {
        const answer = await request('POST', 'queries/notebook', { job_id: str(args.job_id) });
        await commands.execute('docmanager:open', { path: answer.path });
      } catch (err) {
        await showErrorMessage('Cannot open the query as a notebook', errorMessage(err));
      }
    }
  });
  commands.addCommand(CommandIDs.openQueryInPortal, {
    label: 'Open in portal',
    dataset: args => ({ testid: `sciplat-query-portal:${str(args.job_id)}` }),
    isEnabled: args => !!str(args.portal_url),
    execute: async args => {
      try {
        await openPortal(app, request, str(args.portal_url));
      } catch (err) {
        await showErrorMessage('Cannot open the portal', errorMessage(err));
      }
    }
  });
  commands.addCommand(CommandIDs.queriesPlaceholder, {
    label: args => str(args.label),
    isEnabled: () => false,
    dataset: args => ({ testid: `sciplat-queries-${str(args.kind) || 'empty'}` }),
    execute: () => undefined
  });
  commands.addCommand(CommandIDs.refreshQueries, {
    label: 'Refresh',
    dataset: { testid: 'sciplat-queries-refresh' },
    execute: load
  });
}

function setupPortal(
  app: JupyterFrontEnd,
  request: Requester,
  browser: IDefaultFileBrowser | null
): void {
  const { commands } = app;
  commands.addCommand(CommandIDs.openPortal, {
    label: 'Open portal',
    caption: 'The portal in a lab tab',
    dataset: { testid: 'sciplat-open-portal' },
    execute: async () => {
      try {
        await openPortal(app, request);
      } catch (err) {
        await showErrorMessage('Cannot open the portal', errorMessage(err));
      }
    }
  });
  commands.addCommand(CommandIDs.sendToPortal, {
    label: 'Send file to portal',
    caption: 'Show the selected table file (VOTable, Parquet, CSV, FITS) in the portal',
    dataset: { testid: 'sciplat-send-to-portal' },
    isVisible: args => args.source !== 'browser' || portalAccepts(selectedPath(browser)),
    execute: async args => {
      const path = str(args.path) || selectedPath(browser);
      if (!path) {
        await showErrorMessage(
          'Cannot send to the portal',
          'Select a table file (VOTable, Parquet, CSV or FITS) in the file browser first.'
        );
        return;
      }
      try {
        const url = await sendToPortal(request, path);
        await openPortal(app, request, url);
      } catch (err) {
        await showErrorMessage('Cannot send to the portal', errorMessage(err));
      }
    }
  });
}

function setupRun(
  app: JupyterFrontEnd,
  request: Requester,
  browser: IDefaultFileBrowser | null
): void {
  const { commands } = app;
  const cache = new Map<string, { at: number; answer: RunSchemaAnswer | null }>();
  const pending = new Set<string>();
  const fetchSchema = async (path: string): Promise<RunSchemaAnswer> => {
    const answer = (await request(
      'GET',
      `run/schema?path=${encodeURIComponent(path)}`
    )) as RunSchemaAnswer;
    cache.set(path, { at: Date.now(), answer });
    return answer;
  };
  const pathFor = (args: Args) =>
    str(args.path) ||
    (args.widget_id
      ? documentPath(app, str(args.widget_id))
      : args.source === 'browser'
        ? selectedPath(browser)
        : currentNotebookPath(app));
  const known = (path: string): boolean => {
    const hit = cache.get(path);
    if (hit && Date.now() - hit.at < SCHEMA_TTL) {
      return !!hit.answer?.has_template;
    }
    if (!pending.has(path)) {
      pending.add(path);
      fetchSchema(path)
        .catch(() => cache.set(path, { at: Date.now(), answer: null }))
        .finally(() => {
          pending.delete(path);
          commands.notifyCommandChanged(CommandIDs.runWithParameters);
        });
    }
    return hit ? !!hit.answer?.has_template : false;
  };
  const execute = async (args: Args) => {
    const path = pathFor(args);
    if (!path || !isNotebook(path)) {
      await showErrorMessage('Run with parameters', 'Open or select a notebook first.');
      return;
    }
    let spec: RunSchemaAnswer;
    let fields;
    try {
      spec = await fetchSchema(path);
      if (!spec.has_template) {
        await showErrorMessage(
          'Run with parameters',
          `${path} has no template sidecar, so it takes no parameters.`
        );
        return;
      }
      fields = fieldsFromSchema(spec.schema);
    } catch (err) {
      await showErrorMessage('Cannot run this notebook with parameters', errorMessage(err));
      return;
    }
    let raw: Record<string, RawValue> = {};
    let problem = '';
    let parameters: Record<string, unknown>;
    for (;;) {
      const form = new RunForm(fields, spec.description ?? '', raw, problem);
      const result = await showDialog({
        title: spec.title || `Run ${path} with parameters`,
        body: form,
        buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.okButton({ label: 'Run' })],
        focusNodeSelector: 'input, select'
      });
      if (!result.button.accept) {
        return;
      }
      raw = result.value ?? {};
      const checked = validateForm(fields, raw);
      if (!checked.errors.length) {
        parameters = checked.values;
        break;
      }
      problem = checked.errors.map(e => e.message).join(' ');
    }
    const note = Notification.emit(`Running ${path}…`, 'in-progress', { autoClose: false });
    try {
      const outcome = await runWithParameters(request, path, parameters, {
        interval: RUN_POLL_INTERVAL,
        timeout: RUN_TIMEOUT,
        onStatus: status =>
          Notification.update({ id: note, message: `Running ${path}: ${status}`, type: 'in-progress' })
      });
      if (outcome.kind === 'done') {
        Notification.update({ id: note, message: `${path} ran`, type: 'success', autoClose: 3000 });
        openFrame(
          app,
          `sciplat-run-${outcome.jobId}`,
          `${path.split('/').pop()} (run)`,
          outcome.htmlUrl,
          'sciplat-run-result'
        );
      } else {
        Notification.dismiss(note);
        await showErrorMessage('Notebook run failed', outcome.error);
      }
    } catch (err) {
      Notification.dismiss(note);
      await showErrorMessage('Cannot run this notebook with parameters', errorMessage(err));
    }
  };
  commands.addCommand(CommandIDs.runWithParameters, {
    label: 'Run with parameters…',
    caption: 'Run this templated notebook with parameters in the notebook-execution service',
    dataset: { testid: 'sciplat-run-with-parameters' },
    isEnabled: args => {
      const path = pathFor(args);
      return !!path && isNotebook(path) && known(path);
    },
    isVisible: args => args.source !== 'browser' || isNotebook(selectedPath(browser)),
    execute
  });
  app.docRegistry.addWidgetExtension('Notebook', {
    createNew(widget: Widget, context: DocumentRegistry.Context) {
      const button = new CommandToolbarButton({
        commands,
        id: CommandIDs.runWithParameters,
        args: { widget_id: widget.id },
        label: 'Run with parameters…'
      });
      if (widget instanceof DocumentWidget) {
        widget.toolbar.insertItem(10, 'sciplat-run', button);
      }
      return button;
    }
  });
}

function setupExit(app: JupyterFrontEnd, request: Requester, mainMenu: IMainMenu | null): void {
  const { commands } = app;
  const run = async (logout: boolean) => {
    try {
      await saveAllAndExit(
        request,
        () => commands.execute('docmanager:save-all'),
        url => window.location.assign(url),
        logout
      );
    } catch (err) {
      await showErrorMessage('Cannot save and exit', errorMessage(err));
    }
  };
  commands.addCommand(CommandIDs.saveAllAndExit, {
    label: 'Save All and Exit',
    caption: 'Save every open document and stop this lab',
    dataset: { testid: 'sciplat-save-all-and-exit' },
    execute: () => run(false)
  });
  commands.addCommand(CommandIDs.saveAllExitAndLogout, {
    label: 'Save All, Exit, and Log Out',
    caption: 'Save every open document, stop this lab and log out',
    dataset: { testid: 'sciplat-save-all-exit-and-logout' },
    execute: () => run(true)
  });
  mainMenu?.fileMenu.addGroup(
    [{ command: CommandIDs.saveAllAndExit }, { command: CommandIDs.saveAllExitAndLogout }],
    990
  );
}

function setupStatus(app: JupyterFrontEnd, request: Requester, statusBar: IStatusBar): void {
  const widget = new StatusWidget();
  widget.show_('sciplat…', 'Reading the lab status');
  statusBar.registerStatusItem('sciplat:status', { item: widget, align: 'left', rank: 100 });
  // Disk use changes slowly and costs the workspace service a measurement: read once a minute.
  let usage: WorkspaceUsage | null = null;
  let usageRead = 0;
  const readUsage = async (): Promise<void> => {
    if (Date.now() - usageRead < USAGE_MAX_AGE) {
      return;
    }
    usageRead = Date.now();
    try {
      usage = (await request('GET', 'usage')) as WorkspaceUsage;
    } catch (err) {
      usage = null; // the workspace service is down: memory and image are still worth showing
      console.warn('sciplat: cannot read workspace usage:', errorMessage(err));
    }
  };
  // Starts at once (Poll's `auto`), then every interval while the page is visible.
  new Poll({
    factory: async () => {
      try {
        const [status] = await Promise.all([
          request('GET', 'status') as Promise<LabStatus>,
          readUsage()
        ]);
        const frac = memoryFraction(status);
        const disk = usage ? diskFraction(usage.home) : null;
        const warn = (frac !== null && frac > 0.9) || (disk !== null && disk > 0.9);
        widget.show_(statusText(status, usage), statusTooltip(status, usage), warn);
      } catch (err) {
        widget.show_(STATUS_UNAVAILABLE, errorMessage(err), true);
      }
    },
    frequency: { interval: STATUS_INTERVAL, backoff: false },
    standby: 'when-hidden',
    name: 'sciplat:status'
  });
}

async function showStartupProblems(request: Requester): Promise<void> {
  let problems: StartupProblem[] = [];
  try {
    problems = (await request('GET', 'startup-problems')).problems ?? [];
  } catch (err) {
    console.warn('sciplat: cannot read start-up problems:', errorMessage(err));
    return;
  }
  if (problems.length) {
    await showDialog({
      title: 'Problems starting your lab',
      body: problemsBody(problems),
      buttons: [Dialog.okButton({ label: 'OK' })]
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@sciplat/lab:plugin',
  description: 'sciplat: tutorials, query history, portal, run with parameters, exit, status.',
  autoStart: true,
  optional: [IMainMenu, IStatusBar, ICommandPalette, IDefaultFileBrowser, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    mainMenu: IMainMenu | null,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    browser: IDefaultFileBrowser | null,
    labShell: ILabShell | null
  ) => {
    const request = makeRequester();
    const { commands } = app;

    const tutorials = new DynamicMenu(commands, 'sciplat-tutorials-menu', 'Tutorials');
    const queries = new DynamicMenu(commands, 'sciplat-queries-menu', 'Queries');
    const portal = new DynamicMenu(commands, 'sciplat-portal-menu', 'Portal');
    tutorials.setEntries(loadingMenu(CommandIDs.tutorialsPlaceholder));
    queries.setEntries(loadingMenu(CommandIDs.queriesPlaceholder));
    const loadTutorials = setupTutorials(app, request, tutorials);
    setupQueries(app, request, queries, mainMenu instanceof Widget ? mainMenu : null);
    setupPortal(app, request, browser);
    setupRun(app, request, browser);
    setupExit(app, request, mainMenu);
    portal.addItem({ command: CommandIDs.openPortal });
    portal.addItem({ command: CommandIDs.sendToPortal });

    if (mainMenu) {
      mainMenu.addMenu(tutorials, true, { rank: 900 });
      mainMenu.addMenu(queries, true, { rank: 901 });
      mainMenu.addMenu(portal, true, { rank: 902 });
    }
    app.contextMenu.addItem({
      command: CommandIDs.sendToPortal,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      args: { source: 'browser' },
      rank: 60
    });
    app.contextMenu.addItem({
      command: CommandIDs.runWithParameters,
      selector: '.jp-DirListing-item[data-isdir="false"]',
      args: { source: 'browser' },
      rank: 61
    });
    if (palette) {
      for (const command of [
        CommandIDs.runWithParameters,
        CommandIDs.openPortal,
        CommandIDs.sendToPortal,
        CommandIDs.refreshQueries,
        CommandIDs.saveAllAndExit,
        CommandIDs.saveAllExitAndLogout
      ]) {
        palette.addItem({ command, category: 'sciplat' });
      }
    }
    labShell?.currentChanged.connect(() =>
      commands.notifyCommandChanged(CommandIDs.runWithParameters)
    );
    if (statusBar) {
      setupStatus(app, request, statusBar);
    }
    loadTutorials();
    void app.restored.then(() => showStartupProblems(request));
  }
};

export default plugin;
