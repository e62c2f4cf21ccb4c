/**
 * Calls to the pipelines and runs endpoints. Errors are `APIError`s with the server's message.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { APIError, requestAPI, sendJSON } from '../api';
import { SSEParser } from './sse';
import { IPipeline, IPipelineSearch, IRun, IRunEvent, IRunList } from './types';

export function searchPipelines(query: string): Promise<IPipelineSearch> {
  return requestAPI<IPipelineSearch>(`pipelines?q=${encodeURIComponent(query)}`);
}

export function getPipeline(id: string): Promise<IPipeline> {
  // Ids are "<mission>/<name>": each part is encoded, the slash between them stays.
  return requestAPI<IPipeline>(`pipelines/${id.split('/').map(encodeURIComponent).join('/')}`);
}

export function launchRun(pipeline: string, inputs: Record<string, unknown>): Promise<IRun> {
  return sendJSON<IRun>('runs', 'POST', { pipeline, inputs });
}

export function listRuns(): Promise<IRunList> {
  return requestAPI<IRunList>('runs');
}

export function getRun(id: string): Promise<IRun> {
  return requestAPI<IRun>(`runs/${encodeURIComponent(id)}`);
}

export function cancelRun(id: string): Promise<IRun> {
  return sendJSON<IRun>(`runs/${encodeURIComponent(id)}/cancel`, 'POST');
}

export function rerun(id: string): Promise<IRun> {
  return sendJSON<IRun>(`runs/${encodeURIComponent(id)}/rerun`, 'POST');
}

export function runLog(id: string, step?: string): Promise<string> {
  const query = step ? `?step=${encodeURIComponent(step)}` : '';
  return requestAPI<string>(`runs/${encodeURIComponent(id)}/log${query}`);
}

function runURL(settings: ServerConnection.ISettings, id: string, what: string): string {
  return URLExt.join(settings.baseUrl, 'datalabs', 'api', 'runs', encodeURIComponent(id), what);
}

/** Where the run's provenance zip is downloaded from (the browser's session cookie authorises). */
export function provenanceURL(id: string): string {
  const settings = ServerConnection.makeSettings();
  return runURL(settings, id, 'provenance');
}

/**
 * Follow `GET runs/<id>/events` until the server ends the stream (the run reached a final state)
 * or `signal` aborts. A dropped connection is resumed from the last event id; after three failed
 * connections it answers `'failed'` and the caller polls `GET runs/<id>` instead.
 */
export async function followEvents(
  id: string,
  onEvent: (event: IRunEvent) => void,
  signal: AbortSignal
): Promise<'ended' | 'aborted' | 'failed'> {
  const settings = ServerConnection.makeSettings();
  const url = runURL(settings, id, 'events');
  const parser = new SSEParser();
  let failures = 0;
  while (!signal.aborted && failures < 3) {
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (parser.lastId) {
        headers['Last-Event-ID'] = parser.lastId;
      }
      const response = await ServerConnection.makeRequest(url, { headers, signal }, settings);
      if (!response.ok || !response.body) {
        const text = await response.text();
        throw new APIError(response.status, text || response.statusText);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        for (const message of parser.feed(decoder.decode(value, { stream: true }))) {
          if (message.event === 'end') {
            onEvent({ kind: 'end', ...safeJSON(message.data) });
            return 'ended';
          }
          onEvent({ kind: message.event, ...safeJSON(message.data) });
        }
      }
      failures += 1;
    } catch (error) {
      if (signal.aborted) {
        return 'aborted';
      }
      if (error instanceof APIError && error.status === 404) {
        return 'failed';
      }
      failures += 1;
      await new Promise(resolve => setTimeout(resolve, 500 * failures));
    }
  }
  return signal.aborted ? 'aborted' : 'failed';
}

function safeJSON(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text);
    return value && typeof value === 'object' ? value : {};
  } catch {
    return {};
  }
}
