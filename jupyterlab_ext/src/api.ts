/**
 * The Datalabs REST API (`/datalabs/api/`) as the front end sees it: one request helper and the
 * response types. The server side lives in `jupyterlab_ext/handlers/`.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error the API answered with; `message` is meant for a person. */
export class APIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: Record<string, unknown> = {}
  ) {
    super(message);
  }
}

/**
 * Call `/datalabs/api/<endPoint>` and return its JSON (undefined for 204).
 *
 * Errors become an `APIError` carrying the server's `message` so that callers can show it as is.
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'datalabs', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new APIError(0, `The server could not be reached: ${String(error)}`);
  }
  if (response.status === 204) {
    return undefined as T;
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0 && (response.headers.get('Content-Type') ?? '').includes('json')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && (data.message as string)) ||
      `${response.status} ${response.statusText}`;
    throw new APIError(response.status, message, typeof data === 'object' ? data : {});
  }
  return data as T;
}

/** What to show a person for a failed call: the server's own message when there is one. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** POST/PATCH helper: JSON body in, JSON out. */
export function sendJSON<T>(endPoint: string, method: string, body?: unknown): Promise<T> {
  return requestAPI<T>(endPoint, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body)
  });
}
