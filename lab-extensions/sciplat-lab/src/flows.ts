/**
 * The commands' logic, written against a `Requester` and small callbacks so that it runs (and
 * is tested) without JupyterLab.
 */
import { ApiError } from './errors';
import { portalAccepts, unsupportedTypeMessage } from './filetypes';
import type { Requester, RunStatus, RunSubmitted } from './types';

/** The user's answer when a personal copy of a tutorial already exists. */
export type ExistsChoice = 'open' | 'replace' | 'cancel';

/**
 * Copy a tutorial into the user's space; returns the path to open, or null when cancelled.
 * An existing copy is never replaced without `ask` answering "replace".
 */
export async function copyTutorial(
  request: Requester,
  path: string,
  ask: (existing: string, message: string) => Promise<ExistsChoice>
): Promise<string | null> {
  try {
    const answer = await request('POST', 'tutorials/copy', { path, overwrite: false });
    return answer.copied_to as string;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 409) {
      throw err;
    }
    const existing = String(err.body.copied_to ?? '');
    const choice = await ask(existing, err.message);
    if (choice === 'open') {
      return existing;
    }
    if (choice === 'cancel') {
      return null;
    }
    const answer = await request('POST', 'tutorials/copy', { path, overwrite: true });
    return answer.copied_to as string;
  }
}

/** A lab file the portal cannot show (checked before any upload). */
export class UnsupportedTypeError extends Error {
  constructor(path: string) {
    super(unsupportedTypeMessage(path));
    this.name = 'UnsupportedTypeError';
  }
}

/** Send a lab file to the portal; returns the portal URL that shows it. */
export async function sendToPortal(request: Requester, path: string): Promise<string> {
  if (!portalAccepts(path)) {
    throw new UnsupportedTypeError(path);
  }
  try {
    const answer = await request('POST', 'portal/send', { path });
    return answer.portal_url as string;
  } catch (err) {
    if (err instanceof ApiError && err.status === 415) {
      // The server knows better (e.g. a .fits image, not a table): keep its reason.
      throw new ApiError(415, err.code, `${err.message} ${unsupportedTypeMessage(path)}`.trim());
    }
    throw err;
  }
}

const DONE = new Set(['completed', 'complete', 'done', 'succeeded', 'success', 'finished']);
const FAILED = new Set(['error', 'failed', 'failure', 'aborted', 'cancelled', 'canceled']);

export type RunOutcome =
  | { kind: 'done'; jobId: string; htmlUrl: string }
  | { kind: 'failed'; jobId: string; error: string };

export interface PollOptions {
  /** Milliseconds between status calls. */
  interval: number;
  /** Give up after this many milliseconds. */
  timeout: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  onStatus?: (status: string) => void;
}

const realSleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/** Whether a job status string means finished well / failed / still going. */
export function runState(status: string): 'done' | 'failed' | 'running' {
  const s = status.toLowerCase();
  return DONE.has(s) ? 'done' : FAILED.has(s) ? 'failed' : 'running';
}

/** Submit a notebook with parameters and poll until it is rendered or failed. */
export async function runWithParameters(
  request: Requester,
  path: string,
  parameters: Record<string, unknown>,
  options: PollOptions
): Promise<RunOutcome> {
  const sleep = options.sleep ?? realSleep;
  const now = options.now ?? Date.now;
  const submitted = (await request('POST', 'run', { path, parameters })) as RunSubmitted;
  const jobId = submitted.job_id;
  const deadline = now() + options.timeout;
  for (;;) {
    const status = (await request(
      'GET',
      `run/${encodeURIComponent(jobId)}`
    )) as RunStatus;
    options.onStatus?.(status.status);
    const state = runState(status.status);
    if (state === 'done') {
      return { kind: 'done', jobId, htmlUrl: status.html_url || submitted.html_url };
    }
    if (state === 'failed') {
      return { kind: 'failed', jobId, error: status.error || `The run ended with "${status.status}".` };
    }
    if (now() >= deadline) {
      return {
        kind: 'failed',
        jobId,
        error:
          `The run did not finish within ${Math.round(options.timeout / 1000)} s ` +
          `(last status "${status.status}"); job ${jobId} may still finish in the notebooks service.`
      };
    }
    await sleep(options.interval);
  }
}

/** Save every document, ask the server to stop this lab, then go where it says. */
export async function saveAllAndExit(
  request: Requester,
  saveAll: () => Promise<unknown>,
  navigate: (url: string) => void,
  logout: boolean
): Promise<string> {
  await saveAll();
  const answer = await request('POST', 'exit', { logout });
  const redirect = String(answer.redirect || (logout ? '/hub/logout' : '/hub/home'));
  navigate(redirect);
  return redirect;
}
