import { describe, expect, it } from 'vitest';

import { CommandIDs } from '../src/commandids';
import { ApiError } from '../src/errors';
import {
  MenuEntry,
  queriesErrorMenu,
  queriesMenu,
  queryLabel,
  queryStart,
  slug,
  tutorialsErrorMenu,
  tutorialsMenu
} from '../src/menus';
import type { QueryRecord } from '../src/types';

const q = (job_id: string, query: string, phase = 'COMPLETED', portal_url: string | null = null) =>
  ({ job_id, query, phase, created: '2026-11-22T03:00:00Z', result_url: null, portal_url }) as QueryRecord;

const commands = (entries: MenuEntry[]) =>
  entries.filter(e => e.kind === 'command').map(e => (e as any).command);

describe('tutorials menu', () => {
  it('has one submenu per non-empty section with the notebooks in order', () => {
    const entries = tutorialsMenu([
      {
        name: 'intro',
        title: 'Introduction',
        notebooks: [
          { path: 'intro/01-hello.ipynb', title: 'Hello' },
          { path: 'intro/02-tap.ipynb', title: '' }
        ]
      },
      { name: 'empty one', title: 'Empty', notebooks: [] }
    ]);
    expect(entries).toHaveLength(3);
    const sub = entries[0];
    expect(sub.kind).toBe('submenu');
    if (sub.kind !== 'submenu') {
      return;
    }
    expect(sub.id).toBe('sciplat-tutorials-intro');
    expect(sub.label).toBe('Introduction');
    expect(sub.items).toEqual([
      {
        kind: 'command',
        command: CommandIDs.openTutorial,
        args: { path: 'intro/01-hello.ipynb', title: 'Hello' }
      },
      {
        kind: 'command',
        command: CommandIDs.openTutorial,
        args: { path: 'intro/02-tap.ipynb', title: 'intro/02-tap.ipynb' }
      }
    ]);
    expect(entries[1].kind).toBe('separator');
    expect(commands(entries)).toEqual([CommandIDs.refreshTutorials]);
  });

  it('says when there are none, and shows errors as a disabled item', () => {
    const empty = tutorialsMenu([]);
    expect(empty[0]).toMatchObject({
      command: CommandIDs.tutorialsPlaceholder,
      args: { label: 'No tutorials installed', kind: 'empty' }
    });
    const failed = tutorialsErrorMenu(new ApiError(503, 'x', 'Tutorials are not installed.'));
    expect(failed[0]).toMatchObject({
      command: CommandIDs.tutorialsPlaceholder,
      args: { label: 'Tutorials are not installed.', kind: 'error' }
    });
  });
});

describe('queries menu', () => {
  it('labels each job with id, phase and the start of the query', () => {
    expect(queryLabel(q('abc123', 'SELECT  ra,\n dec FROM dp02.Object', 'completed'))).toBe(
      'abc123 · COMPLETED · SELECT ra, dec FROM dp02.Object'
    );
    const long = 'SELECT ' + 'x, '.repeat(40) + 'y FROM t';
    const start = queryStart(long);
    expect(start.length).toBe(40);
    expect(start.endsWith('…')).toBe(true);
    expect(queryLabel(q('j', '', ''))).toBe('j · UNKNOWN');
  });

  it('offers notebook and portal for each job, then Refresh', () => {
    const entries = queriesMenu([q('j1', 'SELECT 1', 'COMPLETED', '/portal?job=j1'), q('j/2', 'SELECT 2', 'ERROR')]);
    expect(entries.map(e => e.kind)).toEqual(['submenu', 'submenu', 'separator', 'command']);
    const first = entries[0];
    if (first.kind !== 'submenu') {
      throw new Error('submenu expected');
    }
    expect(first.id).toBe('sciplat-query-j1');
    expect(first.items).toEqual([
      { kind: 'command', command: CommandIDs.openQueryNotebook, args: { job_id: 'j1' } },
      {
        kind: 'command',
        command: CommandIDs.openQueryInPortal,
        args: { job_id: 'j1', portal_url: '/portal?job=j1' }
      }
    ]);
    const second = entries[1];
    expect(second.kind === 'submenu' && second.id).toBe('sciplat-query-j-2');
    expect(second.kind === 'submenu' && second.items[1]).toMatchObject({ args: { portal_url: '' } });
    expect(commands(entries)).toEqual([CommandIDs.refreshQueries]);
  });

  it('shows a disabled "No queries yet" for an empty history', () => {
    const entries = queriesMenu([]);
    expect(entries[0]).toEqual({
      kind: 'command',
      command: CommandIDs.queriesPlaceholder,
      args: { label: 'No queries yet', kind: 'empty' }
    });
    expect(commands(entries)).toEqual([CommandIDs.queriesPlaceholder, CommandIDs.refreshQueries]);
  });

  it("shows the server's message when TAP is unreachable", () => {
    const entries = queriesErrorMenu(
      new ApiError(503, 'tap-unreachable', 'The TAP service is not answering; try again later.')
    );
    expect(entries[0]).toMatchObject({
      command: CommandIDs.queriesPlaceholder,
      args: { label: 'The TAP service is not answering; try again later.', kind: 'error' }
    });
    expect(commands(entries)).toContain(CommandIDs.refreshQueries);
  });

  it('makes DOM-safe ids', () => {
    expect(slug('a b/c')).toBe('a-b-c');
    expect(slug('///')).toBe('x');
    expect(slug('ok_1-2')).toBe('ok_1-2');
  });
});
