/**
 * Errors from the server extension, and the text a user is shown for them.
 */

/** An error answer of the server extension (`{"error", "message"}` with a 4xx/5xx status). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly body: Record<string, unknown>;

  constructor(status: number, code: string, message: string, body: Record<string, unknown> = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const FALLBACK: Record<string, string> = {
  'tap-unreachable': 'The TAP service cannot be reached right now; try again in a minute.',
  'notebooks-unreachable':
    'The notebook-execution service cannot be reached right now; try again in a minute.',
  'portal-unavailable': 'The portal is not available right now; try again in a minute.',
  'unsupported-type': 'The portal cannot show this type of file.',
  'bad-sidecar': "The notebook's template sidecar is not valid.",
  exists: 'You already have a copy of this notebook.'
};

/** Build an `ApiError` from an HTTP status and the (possibly non-JSON) answer text. */
export function apiErrorFromResponse(status: number, text: string): ApiError {
  let body: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      body = parsed as Record<string, unknown>;
    }
  } catch {
    // not JSON: e.g. a proxy's HTML error page
  }
  const code = typeof body.error === 'string' ? body.error : `http-${status}`;
  let message = typeof body.message === 'string' && body.message ? body.message : '';
  if (!message) {
    message = FALLBACK[code] ?? statusMessage(status);
  }
  return new ApiError(status, code, message, body);
}

function statusMessage(status: number): string {
  if (status === 0) {
    return 'The lab server cannot be reached; check your connection.';
  }
  if (status === 401 || status === 403) {
    return 'Your session has expired or lacks the right; reload the page to log in again.';
  }
  if (status === 404) {
    return 'Not found.';
  }
  if (status === 502 || status === 503 || status === 504) {
    return 'A service the lab needs is not answering; try again in a minute.';
  }
  return `The lab server answered with HTTP ${status}.`;
}

/** The text to show a user for any error thrown while talking to the server extension. */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) {
    return err.message;
  }
  if (err instanceof Error) {
    if (err.name === 'NetworkError' || err instanceof TypeError) {
      return 'The lab server cannot be reached; check your connection.';
    }
    return err.message || String(err);
  }
  return String(err);
}
