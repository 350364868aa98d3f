/**
 * Lab tabs showing a URL (the portal, rendered notebooks).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IFrame } from '@jupyterlab/ui-components';

const SANDBOX: IFrame.SandboxExceptions[] = [
  'allow-scripts',
  'allow-same-origin',
  'allow-forms',
  'allow-popups',
  'allow-downloads',
  'allow-modals'
];

/** Open (or reuse and point elsewhere) the main-area tab `id` showing `url`. */
export function openFrame(
  app: JupyterFrontEnd,
  id: string,
  label: string,
  url: string,
  className: string
): void {
  for (const widget of app.shell.widgets('main')) {
    if (widget.id === id && widget instanceof MainAreaWidget && widget.content instanceof IFrame) {
      widget.content.url = url;
      app.shell.activateById(id);
      return;
    }
  }
  const frame = new IFrame({ sandbox: SANDBOX, referrerPolicy: 'same-origin' });
  frame.url = url;
  const widget = new MainAreaWidget({ content: frame });
  widget.id = id;
  widget.addClass(className);
  widget.title.label = label;
  widget.title.caption = url;
  widget.title.closable = true;
  app.shell.add(widget, 'main');
  app.shell.activateById(id);
}
