/**
 * Menu models built from the server's JSON, independent of JupyterLab's widgets.
 */
import { CommandIDs } from './commandids';
import { errorMessage } from './errors';
import type { QueryRecord, TutorialSection } from './types';

export type MenuArgs = Record<string, string>;

export type MenuEntry =
  | { kind: 'command'; command: string; args: MenuArgs }
  | { kind: 'submenu'; id: string; label: string; items: MenuEntry[] }
  | { kind: 'separator' };

/** A DOM-id-safe form of any string (`"a b/c"` -> `"a-b-c"`). */
export function slug(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
}

const command = (cmd: string, args: MenuArgs = {}): MenuEntry => ({
  kind: 'command',
  command: cmd,
  args
});

/** A menu that is still being read from the server. */
export function loadingMenu(placeholder: string): MenuEntry[] {
  return [command(placeholder, { label: 'Loading…', kind: 'loading' })];
}

/** The Tutorials menu: one submenu per non-empty section, then Refresh. */
export function tutorialsMenu(sections: TutorialSection[]): MenuEntry[] {
  const entries: MenuEntry[] = [];
  for (const section of sections) {
    if (!section.notebooks.length) {
      continue;
    }
    entries.push({
      kind: 'submenu',
      id: `sciplat-tutorials-${slug(section.name)}`,
      label: section.title || section.name,
      items: section.notebooks.map(nb =>
        command(CommandIDs.openTutorial, { path: nb.path, title: nb.title || nb.path })
      )
    });
  }
  if (!entries.length) {
    entries.push(
      command(CommandIDs.tutorialsPlaceholder, { label: 'No tutorials installed', kind: 'empty' })
    );
  }
  entries.push({ kind: 'separator' }, command(CommandIDs.refreshTutorials));
  return entries;
}

/** The Tutorials menu when the list could not be read. */
export function tutorialsErrorMenu(err: unknown): MenuEntry[] {
  return [
    command(CommandIDs.tutorialsPlaceholder, { label: errorMessage(err), kind: 'error' }),
    { kind: 'separator' },
    command(CommandIDs.refreshTutorials)
  ];
}

const QUERY_START = 40;

/** One line of ADQL, cut to `QUERY_START` characters with an ellipsis. */
export function queryStart(query: string): string {
  const flat = query.replace(/\s+/g, ' ').trim();
  return flat.length > QUERY_START ? `${flat.slice(0, QUERY_START - 1)}…` : flat;
}

/** `<job_id> · <PHASE> · <start of the query>`. */
export function queryLabel(q: QueryRecord): string {
  return [q.job_id, (q.phase || 'UNKNOWN').toUpperCase(), queryStart(q.query || '')]
    .filter(Boolean)
    .join(' · ');
}

/** The Queries menu: one submenu per job (newest first, as the server orders them), then Refresh. */
export function queriesMenu(queries: QueryRecord[]): MenuEntry[] {
  const entries: MenuEntry[] = queries.map(q => ({
    kind: 'submenu',
    id: `sciplat-query-${slug(q.job_id)}`,
    label: queryLabel(q),
    items: [
      command(CommandIDs.openQueryNotebook, { job_id: q.job_id }),
      command(CommandIDs.openQueryInPortal, { job_id: q.job_id, portal_url: q.portal_url ?? '' })
    ]
  }));
  if (!entries.length) {
    entries.push(command(CommandIDs.queriesPlaceholder, { label: 'No queries yet', kind: 'empty' }));
  }
  entries.push({ kind: 'separator' }, command(CommandIDs.refreshQueries));
  return entries;
}

/** The Queries menu when the history could not be read (TAP unreachable, ...). */
export function queriesErrorMenu(err: unknown): MenuEntry[] {
  return [
    command(CommandIDs.queriesPlaceholder, { label: errorMessage(err), kind: 'error' }),
    { kind: 'separator' },
    command(CommandIDs.refreshQueries)
  ];
}
