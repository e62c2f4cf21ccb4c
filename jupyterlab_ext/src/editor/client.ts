/** Calls to the editor's REST API (`/datalabs/api/editor/...`). */
import { requestAPI, sendJSON } from '../api';
import { IPipeline } from '../pipelines/types';
import {
  IConnectionCheck,
  IEdge,
  IGraph,
  IGraphReply,
  IPaletteTool,
  IPublishRequest,
  IRunSummary,
  ISaveReply
} from './types';

const q = (path: string) => `?path=${encodeURIComponent(path)}`;

/**
 * The workflow at `path`; `process` names the workflow of a packed document that holds several
 * (without it the server answers 409 with their ids in `processes`).
 */
export function getGraph(path: string, process: string | null = null): Promise<IGraphReply> {
  const which = process ? `&process=${encodeURIComponent(process)}` : '';
  return requestAPI<IGraphReply>(`editor/graph${q(path)}${which}`);
}

export function saveGraph(path: string, graph: IGraph): Promise<ISaveReply> {
  return sendJSON<ISaveReply>(`editor/graph${q(path)}`, 'PUT', { graph });
}

export function checkConnection(graph: IGraph, edge: IEdge): Promise<IConnectionCheck> {
  return sendJSON<IConnectionCheck>('editor/check-connection', 'POST', { graph, ...edge });
}

export function addStep(
  path: string,
  graph: IGraph,
  tool: IPaletteTool,
  position: [number, number] | null
): Promise<{ graph: IGraph; step: string }> {
  return sendJSON('editor/add-step', 'POST', {
    path,
    graph,
    position,
    ...(tool.pipeline ? { pipeline: tool.pipeline } : { tool: tool.path })
  });
}

export function getPalette(): Promise<{ tools: IPaletteTool[] }> {
  return requestAPI('editor/palette');
}

export function publish(request: IPublishRequest): Promise<{ pipeline: { id: string } }> {
  return sendJSON('editor/publish', 'POST', request);
}

export function getRun(id: string): Promise<IRunSummary> {
  return requestAPI<IRunSummary>(`runs/${encodeURIComponent(id)}`);
}

/** The saved file as a draft pipeline (`POST editor/run-draft`), for the launch dialog. */
export function runDraft(path: string, process: string | null = null): Promise<IPipeline> {
  return sendJSON<IPipeline>('editor/run-draft', 'POST', { path, process });
}
