/**
 * Small DOM widgets: the status bar item, the parameter form, dialog bodies.
 */
import { Widget } from '@lumino/widgets';

import {
  boundsText,
  FieldSpec,
  initialRaw,
  optionLabel,
  RawValue
} from './schemaform';
import type { StartupProblem } from './types';

/** The status bar item (`#sciplat-status`). */
export class StatusWidget extends Widget {
  constructor() {
    super();
    this.id = 'sciplat-status';
    this.addClass('sciplat-Status');
    this.node.dataset.testid = 'sciplat-status';
  }

  show_(text: string, tooltip: string, warn = false): void {
    this.node.textContent = text;
    this.node.title = tooltip;
    this.toggleClass('sciplat-Status-warn', warn);
  }
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, v);
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The "Run with parameters" form; `getValue()` gives the raw entries for `validateForm`. */
export class RunForm extends Widget {
  private _fields: FieldSpec[];

  constructor(
    fields: FieldSpec[],
    description: string,
    values: Record<string, RawValue> = {},
    error = ''
  ) {
    super();
    this._fields = fields;
    this.addClass('sciplat-run-dialog');
    const form = el('form', { id: 'sciplat-run-form', class: 'sciplat-RunForm' });
    form.addEventListener('submit', ev => ev.preventDefault());
    if (description) {
      form.appendChild(el('p', { class: 'sciplat-RunForm-description' }, description));
    }
    if (!fields.length) {
      form.appendChild(el('p', {}, 'This template takes no parameters.'));
    }
    for (const field of fields) {
      form.appendChild(this._row(field, field.name in values ? values[field.name] : initialRaw(field)));
    }
    const err = el('div', { class: 'sciplat-RunForm-error', 'data-testid': 'sciplat-run-error' }, error);
    err.hidden = !error;
    form.appendChild(err);
    this.node.appendChild(form);
  }

  private _row(field: FieldSpec, value: RawValue): HTMLElement {
    const id = `sciplat-param-${field.name}`;
    const row = el('div', { class: 'sciplat-RunForm-row' });
    const label = el('label', { for: id }, field.label + (field.required ? ' *' : ''));
    row.appendChild(label);
    const common = { id, name: field.name, 'data-testid': id };
    let input: HTMLInputElement | HTMLSelectElement;
    if (field.kind === 'boolean') {
      input = el('input', { ...common, type: 'checkbox' });
      input.checked = value === true;
    } else if (field.kind === 'enum') {
      input = el('select', common);
      if (!field.required) {
        input.appendChild(el('option', { value: '-1' }, '(not set)'));
      }
      field.options.forEach((option, index) => {
        input.appendChild(el('option', { value: String(index) }, optionLabel(option)));
      });
      input.value = String(value);
    } else {
      const type = field.kind === 'string' ? 'text' : 'text';
      input = el('input', {
        ...common,
        type,
        inputmode: field.kind === 'string' ? 'text' : 'decimal'
      });
      input.value = String(value);
    }
    input.classList.add('jp-mod-styled');
    row.appendChild(input);
    const hint = [field.kind === 'enum' ? '' : field.kind, boundsText(field), field.description]
      .filter(Boolean)
      .join(' · ');
    if (hint) {
      row.appendChild(el('div', { class: 'sciplat-RunForm-hint' }, hint));
    }
    return row;
  }

  getValue(): Record<string, RawValue> {
    const raw: Record<string, RawValue> = {};
    for (const field of this._fields) {
      const input = this.node.querySelector<HTMLInputElement | HTMLSelectElement>(
        `[name="${CSS.escape(field.name)}"]`
      );
      if (!input) {
        continue;
      }
      raw[field.name] =
        input instanceof HTMLInputElement && input.type === 'checkbox' ? input.checked : input.value;
    }
    return raw;
  }
}

/** The start-up problems list. */
export function problemsBody(problems: StartupProblem[]): Widget {
  const body = new Widget();
  body.addClass('sciplat-startup-problems');
  const list = el('ul', { class: 'sciplat-Problems' });
  for (const p of problems) {
    const item = el('li', { 'data-problem-code': p.code });
    item.appendChild(el('strong', {}, p.title));
    item.appendChild(el('p', { class: 'sciplat-Problems-detail' }, p.detail));
    item.appendChild(el('p', { class: 'sciplat-Problems-remedy' }, `What to do: ${p.remedy}`));
    list.appendChild(item);
  }
  body.node.appendChild(list);
  return body;
}

/** A plain text dialog body carrying a class tests can find. */
export function textBody(text: string, className: string): Widget {
  const body = new Widget();
  body.addClass(className);
  body.node.appendChild(el('p', {}, text));
  return body;
}
