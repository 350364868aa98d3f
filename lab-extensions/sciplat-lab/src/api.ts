/**
 * The `Requester` over JupyterLab's own server connection (auth token and XSRF included).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError, apiErrorFromResponse } from './errors';
import type { Requester } from './types';

/** The server extension's URL prefix under the lab's base URL. */
export const API_PREFIX = 'sciplat-lab';

export function makeRequester(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Requester {
  return async (method, path, body) => {
    const [route, query] = path.split('?', 2);
    const url = URLExt.join(settings.baseUrl, API_PREFIX, route) + (query ? `?${query}` : '');
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, settings);
    } catch (err) {
      throw new ApiError(
        0,
        'network',
        'The lab server cannot be reached; check your connection.',
        { detail: String(err) }
      );
    }
    const text = await response.text();
    if (!response.ok) {
      throw apiErrorFromResponse(response.status, text);
    }
    if (!text) {
      return {};
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(response.status, 'bad-answer', `The lab server sent an unreadable answer.`);
    }
  };
}
