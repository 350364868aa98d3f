import { describe, expect, it } from 'vitest';

import { ApiError, apiErrorFromResponse, errorMessage } from '../src/errors';

describe('apiErrorFromResponse', () => {
  it('keeps the server code and message', () => {
    const err = apiErrorFromResponse(
      503,
      JSON.stringify({ error: 'tap-unreachable', message: 'TAP is down; try later.' })
    );
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(503);
    expect(err.code).toBe('tap-unreachable');
    expect(err.message).toBe('TAP is down; try later.');
  });

  it('keeps extra fields of the body (409 copied_to)', () => {
    const err = apiErrorFromResponse(
      409,
      JSON.stringify({ error: 'exists', copied_to: 'tutorials/a.ipynb', message: 'exists' })
    );
    expect(err.body.copied_to).toBe('tutorials/a.ipynb');
  });

  it('falls back to a known text for a code without message', () => {
    expect(apiErrorFromResponse(415, '{"error": "unsupported-type"}').message).toMatch(
      /cannot show this type/
    );
  });

  it('reads a non-JSON page (proxy error) by status', () => {
    const err = apiErrorFromResponse(502, '<html>Bad gateway</html>');
    expect(err.code).toBe('http-502');
    expect(err.message).toMatch(/not answering/);
    expect(apiErrorFromResponse(403, '').message).toMatch(/log in again/);
    expect(apiErrorFromResponse(418, 'x').message).toBe('The lab server answered with HTTP 418.');
  });

  it('ignores a JSON array or non-string fields', () => {
    const err = apiErrorFromResponse(400, '[1, 2]');
    expect(err.code).toBe('http-400');
    expect(apiErrorFromResponse(400, '{"error": 3, "message": ""}').code).toBe('http-400');
  });
});

describe('errorMessage', () => {
  it('maps each kind of thrown thing to text', () => {
    expect(errorMessage(new ApiError(404, 'missing', 'No such file: a.csv'))).toBe(
      'No such file: a.csv'
    );
    expect(errorMessage(new TypeError('Failed to fetch'))).toMatch(/cannot be reached/);
    expect(errorMessage(new Error('boom'))).toBe('boom');
    expect(errorMessage('plain')).toBe('plain');
  });
});
