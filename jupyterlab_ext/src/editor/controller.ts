/**
 * The state of one open Pipeline Editor: the graph being edited, its undo history, the
 * validation problems of the last save, the selection and the run states shown on the canvas.
 * Commands (save, undo, layout, ...) call it; the React view re-renders when it changes.
 */
import { APIError, errorMessage } from '../api';
import * as api from './client';
import { History, autoLayout, connect as connectEdge } from './model';
import { IEdge, IGraph, IPaletteTool, IProblem } from './types';

export type Notice = { kind: 'error' | 'warning' | 'info'; text: string } | null;

export class EditorController {
  graph: IGraph | null = null;
  problems: IProblem[] = [];
  /** The reason the file could not be shown, if it could not. */
  loadError: string | null = null;
  /** The workflow shown, in a packed document (`file.cwl#<process>`) that holds several. */
  process: string | null = null;
  /** The workflows of a packed document to choose from, when it holds several. */
  choices: string[] = [];
  notice: Notice = null;
  selected: string | null = null;
  dirty = false;
  busy = false;
  palette: IPaletteTool[] = [];
  /** Step id -> run state (`success`, `running`, ...) of the run shown on the canvas. */
  runStates: Record<string, string> = {};
  runId: string | null = null;
  /** Bumped when every node must be placed again by the view (load, undo, layout). */
  revision = 0;
  readonly history = new History();
  private _listeners = new Set<() => void>();

  constructor(public path: string) {}

  subscribe(listener: () => void): () => void {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  changed(): void {
    this._listeners.forEach(l => l());
  }

  say(notice: Notice): void {
    this.notice = notice;
    this.changed();
  }

  async load(): Promise<void> {
    try {
      const reply = await api.getGraph(this.path, this.process);
      this.graph = reply.graph;
      this.process = reply.graph.process;
      this.choices = [];
      this.loadError = null;
      this.dirty = false;
      this.history.clear();
      this.revision++;
    } catch (error) {
      this.loadError = errorMessage(error);
      const processes = error instanceof APIError ? error.body.processes : undefined;
      this.choices =
        error instanceof APIError && error.status === 409 && Array.isArray(processes)
          ? processes.map(String)
          : [];
    }
    this.changed();
  }

  /** Open the workflow `process` of a packed document that holds several. */
  async choose(process: string): Promise<void> {
    this.process = process;
    await this.load();
  }

  async loadPalette(): Promise<void> {
    try {
      this.palette = (await api.getPalette()).tools;
    } catch (error) {
      this.say({ kind: 'error', text: `The palette could not be loaded: ${String(error)}` });
    }
    this.changed();
  }

  /** Replace the graph by an edited one (undoable). */
  apply(next: IGraph, replace = false): void {
    if (!this.graph) {
      return;
    }
    this.history.push(this.graph);
    this.graph = next;
    this.dirty = true;
    if (replace) {
      this.revision++;
    }
    this.changed();
  }

  undo(): void {
    this.restore(this.graph && this.history.undo(this.graph));
  }

  redo(): void {
    this.restore(this.graph && this.history.redo(this.graph));
  }

  /** Show a graph from the history (nothing to do when there is none). */
  private restore(graph: IGraph | null | undefined): void {
    if (graph) {
      this.graph = graph;
      this.dirty = true;
      this.revision++;
      this.changed();
    }
  }

  layout(): void {
    if (this.graph) {
      this.apply(autoLayout(this.graph), true);
    }
  }

  select(id: string | null): void {
    if (id !== this.selected) {
      this.selected = id;
      this.changed();
    }
  }

  /** Ask the server whether the link may be made; make it, or say why not. */
  async connect(edge: IEdge): Promise<boolean> {
    if (!this.graph) {
      return false;
    }
    try {
      const verdict = await api.checkConnection(this.graph, edge);
      if (!verdict.allowed) {
        this.say({ kind: 'error', text: `Not connected: ${verdict.reason}` });
        return false;
      }
      this.apply(connectEdge(this.graph, edge));
      this.say(verdict.warning ? { kind: 'warning', text: verdict.warning } : null);
      return true;
    } catch (error) {
      this.say({ kind: 'error', text: errorMessage(error) });
      return false;
    }
  }

  async addTool(tool: IPaletteTool, position: [number, number] | null): Promise<void> {
    if (!this.graph) {
      return;
    }
    try {
      const reply = await api.addStep(this.path, this.graph, tool, position);
      this.apply(reply.graph, true);
      this.selected = reply.step;
      this.say({ kind: 'info', text: `Added the step '${reply.step}' (${tool.label}).` });
    } catch (error) {
      this.say({ kind: 'error', text: errorMessage(error) });
    }
  }

  /** Write the graph as CWL (`PUT editor/graph`); the problems cwltool found are kept. */
  async save(): Promise<boolean> {
    if (!this.graph) {
      return false;
    }
    this.busy = true;
    this.changed();
    try {
      const reply = await api.saveGraph(this.path, this.graph);
      this.graph = reply.graph;
      this.problems = reply.problems;
      this.dirty = false;
      this.revision++;
      this.notice = reply.valid
        ? { kind: 'info', text: `Saved ${this.path}; cwltool finds it valid.` }
        : {
            kind: 'error',
            text: `Saved ${this.path}, but cwltool finds ${reply.problems.length} problem(s).`
          };
      return true;
    } catch (error) {
      this.notice = { kind: 'error', text: `Not saved: ${errorMessage(error)}` };
      return false;
    } finally {
      this.busy = false;
      this.changed();
    }
  }

  /** Colour the steps by the state of run `id`; returns whether the run has ended. */
  async showRun(id: string): Promise<string> {
    const run = await api.getRun(id);
    const states: Record<string, string> = {};
    const ids = (this.graph?.nodes ?? []).filter(n => n.kind === 'step').map(n => n.id);
    for (const step of run.steps ?? []) {
      // cwltool names repeated steps (scatter) `step_2`, `step_3`, ...
      const id = ids.find(s => s === step.name) ?? ids.find(s => step.name.startsWith(`${s}_`));
      if (id) {
        const before = states[id];
        states[id] = before && before !== step.state ? mergeState(before, step.state) : step.state;
      }
    }
    this.runId = id;
    this.runStates = states;
    this.changed();
    return run.state;
  }

  clearRun(): void {
    this.runId = null;
    this.runStates = {};
    this.changed();
  }
}

/** One state for a step that ran several times (scatter): the least finished one wins. */
function mergeState(a: string, b: string): string {
  const order = ['failed', 'running', 'queued', 'success'];
  return order.indexOf(a) <= order.indexOf(b) ? a : b;
}
