import { describe, expect, it } from 'vitest';

import { ApiError } from '../src/errors';
import {
  copyTutorial,
  runState,
  runWithParameters,
  saveAllAndExit,
  sendToPortal,
  UnsupportedTypeError
} from '../src/flows';
import type { Requester } from '../src/types';

type Call = { method: string; path: string; body?: any };

/** A fake server: answers in order, recording each call. */
function server(answers: Array<unknown | ApiError>): { request: Requester; calls: Call[] } {
  const calls: Call[] = [];
  const request: Requester = async (method, path, body) => {
    calls.push({ method, path, body });
    if (!answers.length) {
      throw new Error(`unexpected call ${method} ${path}`);
    }
    const next = answers.shift();
    if (next instanceof ApiError) {
      throw next;
    }
    return next;
  };
  return { request, calls };
}

const exists = new ApiError(409, 'exists', 'You already have a copy.', {
  error: 'exists',
  copied_to: 'tutorials/01.ipynb'
});

describe('copyTutorial', () => {
  it('copies without overwriting and opens the copy', async () => {
    const { request, calls } = server([{ copied_to: 'tutorials/01.ipynb' }]);
    const asked: string[] = [];
    const path = await copyTutorial(request, 'intro/01.ipynb', async e => {
      asked.push(e);
      return 'cancel';
    });
    expect(path).toBe('tutorials/01.ipynb');
    expect(asked).toEqual([]);
    expect(calls).toEqual([
      { method: 'POST', path: 'tutorials/copy', body: { path: 'intro/01.ipynb', overwrite: false } }
    ]);
  });

  it('asks on 409 and opens the existing copy without a second call', async () => {
    const { request, calls } = server([exists]);
    let seen = '';
    const path = await copyTutorial(request, 'intro/01.ipynb', async (e, msg) => {
      seen = `${e}|${msg}`;
      return 'open';
    });
    expect(path).toBe('tutorials/01.ipynb');
    expect(seen).toBe('tutorials/01.ipynb|You already have a copy.');
    expect(calls).toHaveLength(1);
  });

  it('replaces only when the user says so', async () => {
    const { request, calls } = server([exists, { copied_to: 'tutorials/01.ipynb' }]);
    expect(await copyTutorial(request, 'intro/01.ipynb', async () => 'replace')).toBe(
      'tutorials/01.ipynb'
    );
    expect(calls[1].body).toEqual({ path: 'intro/01.ipynb', overwrite: true });
  });

  it('does nothing on cancel and passes other errors on', async () => {
    const a = server([exists]);
    expect(await copyTutorial(a.request, 'x.ipynb', async () => 'cancel')).toBeNull();
    expect(a.calls).toHaveLength(1);
    const b = server([new ApiError(404, 'not-found', 'No tutorial x.ipynb')]);
    await expect(copyTutorial(b.request, 'x.ipynb', async () => 'replace')).rejects.toThrow(
      'No tutorial x.ipynb'
    );
  });
});

describe('sendToPortal', () => {
  it('refuses an unsupported type before any upload', async () => {
    const { request, calls } = server([]);
    await expect(sendToPortal(request, 'plots/a.png')).rejects.toBeInstanceOf(UnsupportedTypeError);
    await expect(sendToPortal(request, 'plots/a.png')).rejects.toThrow(/"\.png" files/);
    expect(calls).toEqual([]);
  });

  it('sends a table and returns the portal URL', async () => {
    const { request, calls } = server([{ portal_url: '/services/portal/?table=1' }]);
    expect(await sendToPortal(request, 'data/t.parquet')).toBe('/services/portal/?table=1');
    expect(calls).toEqual([{ method: 'POST', path: 'portal/send', body: { path: 'data/t.parquet' } }]);
  });

  it("adds the accepted types to the server's 415", async () => {
    const { request } = server([new ApiError(415, 'unsupported-type', 'This FITS file holds an image.')]);
    const err = await sendToPortal(request, 'img.fits').catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.message).toMatch(/^This FITS file holds an image\. The portal cannot show/);
    expect(err.message).toContain('.csv (CSV)');
  });
});

describe('runWithParameters', () => {
  const clock = () => {
    let t = 0;
    const slept: number[] = [];
    return {
      now: () => t,
      sleep: async (ms: number) => {
        slept.push(ms);
        t += ms;
      },
      slept
    };
  };

  it('submits, polls until done and returns the HTML URL', async () => {
    const { request, calls } = server([
      { job_id: 'j1', status_url: '/s', html_url: '/h/j1' },
      { status: 'queued', html_url: null, error: null },
      { status: 'running', html_url: null, error: null },
      { status: 'Completed', html_url: '/h/j1.html', error: null }
    ]);
    const c = clock();
    const seen: string[] = [];
    const outcome = await runWithParameters(request, 'nb/t.ipynb', { n: 3 }, {
      interval: 2000,
      timeout: 60000,
      ...c,
      onStatus: s => seen.push(s)
    });
    expect(outcome).toEqual({ kind: 'done', jobId: 'j1', htmlUrl: '/h/j1.html' });
    expect(calls[0]).toEqual({ method: 'POST', path: 'run', body: { path: 'nb/t.ipynb', parameters: { n: 3 } } });
    expect(calls.slice(1).map(x => x.path)).toEqual(['run/j1', 'run/j1', 'run/j1']);
    expect(seen).toEqual(['queued', 'running', 'Completed']);
    expect(c.slept).toEqual([2000, 2000]);
  });

  it("reports the failing cell's error", async () => {
    const { request } = server([
      { job_id: 'j2', status_url: '', html_url: '/h/j2' },
      { status: 'error', html_url: null, error: 'Cell 4: ZeroDivisionError' }
    ]);
    expect(await runWithParameters(request, 'a.ipynb', {}, { interval: 1, timeout: 10, ...clock() })).toEqual({
      kind: 'failed',
      jobId: 'j2',
      error: 'Cell 4: ZeroDivisionError'
    });
  });

  it('gives up at the deadline, saying the job may still finish', async () => {
    const answers: unknown[] = [{ job_id: 'j3', status_url: '', html_url: '' }];
    for (let i = 0; i < 10; i++) {
      answers.push({ status: 'running', html_url: null, error: null });
    }
    const { request } = server(answers);
    const outcome = await runWithParameters(request, 'a.ipynb', {}, { interval: 1000, timeout: 3000, ...clock() });
    expect(outcome.kind).toBe('failed');
    expect(outcome.kind === 'failed' && outcome.error).toMatch(/did not finish within 3 s .*j3/);
  });

  it('passes a 422 for bad parameters on', async () => {
    const { request } = server([new ApiError(422, 'bad-parameters', '"nmax" must be at most 1000')]);
    await expect(
      runWithParameters(request, 'a.ipynb', { nmax: 5000 }, { interval: 1, timeout: 1, ...clock() })
    ).rejects.toThrow('"nmax" must be at most 1000');
  });

  it('classifies statuses', () => {
    expect(runState('COMPLETED')).toBe('done');
    expect(runState('failed')).toBe('failed');
    expect(runState('executing')).toBe('running');
  });
});

describe('saveAllAndExit', () => {
  it('saves first, then exits, then goes to the redirect', async () => {
    const order: string[] = [];
    const calls: Call[] = [];
    const request: Requester = async (method, path, body) => {
      order.push('exit');
      calls.push({ method, path, body });
      return { redirect: '/hub/logout' };
    };
    const url = await saveAllAndExit(
      request,
      async () => order.push('save'),
      u => order.push(`go ${u}`),
      true
    );
    expect(url).toBe('/hub/logout');
    expect(order).toEqual(['save', 'exit', 'go /hub/logout']);
    expect(calls).toEqual([{ method: 'POST', path: 'exit', body: { logout: true } }]);
  });

  it('does not stop the lab when saving fails', async () => {
    const order: string[] = [];
    const request: Requester = async () => {
      order.push('exit');
      return {};
    };
    await expect(
      saveAllAndExit(
        request,
        async () => {
          throw new Error('disk full');
        },
        () => order.push('go'),
        false
      )
    ).rejects.toThrow('disk full');
    expect(order).toEqual([]);
  });

  it('defaults the redirect to the hub home', async () => {
    const request: Requester = async () => ({});
    let went = '';
    await saveAllAndExit(request, async () => undefined, u => (went = u), false);
    expect(went).toBe('/hub/home');
  });
});
