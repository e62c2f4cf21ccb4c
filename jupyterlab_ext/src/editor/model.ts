/**
 * Edits of the workflow graph on the client, as pure functions (graph in, new graph out), and
 * the undo history. Type checks of new links stay on the server (`editor/check-connection`),
 * which applies cwltool's own rules.
 */
import { IEdge, IGraph, INode, IPort } from './types';

export const sameEdge = (a: IEdge, b: IEdge): boolean =>
  a.source === b.source &&
  a.source_port === b.source_port &&
  a.target === b.target &&
  a.target_port === b.target_port;

export const edgeId = (e: IEdge): string =>
  `${e.source}/${e.source_port}->${e.target}/${e.target_port}`;

function clone(graph: IGraph): IGraph {
  return JSON.parse(JSON.stringify(graph)) as IGraph;
}

function port(node: INode, id: string, side: 'in' | 'out'): IPort | undefined {
  return (side === 'in' ? node.inputs : node.outputs).find(p => p.id === id);
}

/** The graph with the link `edge` (its target port is then written in the step's `in`). */
export function connect(graph: IGraph, edge: IEdge): IGraph {
  const next = clone(graph);
  next.edges.push({ ...edge });
  const target = next.nodes.find(n => n.id === edge.target);
  const p = target && port(target, edge.target_port, 'in');
  if (p) {
    p.declared = true;
  }
  return next;
}

export function disconnect(graph: IGraph, edges: IEdge[]): IGraph {
  const next = clone(graph);
  next.edges = next.edges.filter(e => !edges.some(d => sameEdge(d, e)));
  return next;
}

/** The graph without the nodes `ids` and their links. */
export function removeNodes(graph: IGraph, ids: string[]): IGraph {
  const next = clone(graph);
  next.nodes = next.nodes.filter(n => !ids.includes(n.id));
  next.edges = next.edges.filter(e => !ids.includes(e.source) && !ids.includes(e.target));
  return next;
}

export function setPositions(graph: IGraph, moved: Record<string, [number, number]>): IGraph {
  const next = clone(graph);
  for (const n of next.nodes) {
    if (moved[n.id]) {
      n.position = [Math.round(moved[n.id][0]), Math.round(moved[n.id][1])];
    }
  }
  return next;
}

/** Change one node with `change` (which edits the copy in place). */
export function editNode(graph: IGraph, id: string, change: (node: INode) => void): IGraph {
  const next = clone(graph);
  const node = next.nodes.find(n => n.id === id);
  if (node) {
    change(node);
  }
  return next;
}

/** An id not yet used in the graph, from `base`. */
export function freshId(graph: IGraph, base: string): string {
  const clean = base.replace(/[^A-Za-z0-9_]/g, '_').replace(/^([^A-Za-z_])/, '_$1') || 'value';
  let id = clean;
  let n = 2;
  while (graph.nodes.some(x => x.id === id)) {
    id = `${clean}_${n++}`;
  }
  return id;
}

/** A port as the editor makes it: required, declared, with nothing but its type. */
export function newPort(id: string, type: unknown, typeLabel: string): IPort {
  return {
    id,
    type,
    type_label: typeLabel,
    optional: false,
    declared: true,
    default: null,
    has_default: false,
    value_from: null,
    link_merge: null,
    pick_value: null,
    source_list: false,
    extras: {}
  };
}

/** A new workflow input feeding the step input `step/portId` (same type). */
export function addInputFor(graph: IGraph, step: string, portId: string): IGraph {
  const node = graph.nodes.find(n => n.id === step);
  const p = node && port(node, portId, 'in');
  if (!node || !p) {
    return graph;
  }
  const id = freshId(graph, portId);
  const [x, y] = node.position ?? [0, 0];
  const input: INode = {
    id,
    kind: 'input',
    label: null,
    position: [x - 260, y],
    inputs: [],
    outputs: [newPort(id, p.type ?? 'Any', p.type_label)],
    extras: {}
  };
  const next = clone(graph);
  next.nodes.splice(next.nodes.filter(n => n.kind === 'input').length, 0, input);
  return connect(next, { source: id, source_port: id, target: step, target_port: portId });
}

/** A new workflow output taking the value of `step/portId`. */
export function addOutputFrom(graph: IGraph, step: string, portId: string): IGraph {
  const node = graph.nodes.find(n => n.id === step);
  const p = node && port(node, portId, 'out');
  if (!node || !p) {
    return graph;
  }
  const id = freshId(graph, portId);
  const [x, y] = node.position ?? [0, 0];
  // A tool's `stdout` / `stderr` outputs are Files to the workflow.
  let type: unknown = p.type === 'stdout' || p.type === 'stderr' ? 'File' : (p.type ?? 'Any');
  let label = p.type_label;
  if (node.scatter && node.scatter.length > 0) {
    type = { type: 'array', items: type };
    label = `${label}[]`;
  }
  const output: INode = {
    id,
    kind: 'output',
    label: null,
    position: [x + 300, y],
    inputs: [newPort(id, type, label)],
    outputs: [],
    extras: {}
  };
  const next = clone(graph);
  next.nodes.splice(next.nodes.filter(n => n.kind !== 'step').length, 0, output);
  return connect(next, { source: step, source_port: portId, target: id, target_port: id });
}

const LAYER_GAP = 300;
const ROW_GAP = 40;

/** Rough height of a drawn node, to stack nodes of one column without overlap. */
export function nodeHeight(node: INode): number {
  if (node.kind !== 'step') {
    return 56;
  }
  return 48 + 24 * (node.inputs.length + node.outputs.length);
}

/** Every node placed again: a column per dependency layer, inputs left, outputs right. */
export function autoLayout(graph: IGraph): IGraph {
  const ids = graph.nodes.map(n => n.id);
  const preds: Record<string, string[]> = {};
  ids.forEach(id => (preds[id] = []));
  for (const e of graph.edges) {
    if (preds[e.target] && preds[e.source] !== undefined && e.source !== e.target) {
      preds[e.target].push(e.source);
    }
  }
  const layer: Record<string, number> = {};
  const depth = (id: string, seen: Set<string>): number => {
    if (layer[id] !== undefined) {
      return layer[id];
    }
    if (seen.has(id)) {
      return 0;
    }
    seen.add(id);
    const d = preds[id].length ? Math.max(...preds[id].map(p => depth(p, seen) + 1)) : 0;
    layer[id] = d;
    return d;
  };
  ids.forEach(id => depth(id, new Set()));
  const steps = graph.nodes.filter(n => n.kind === 'step');
  const last = Math.max(1, ...steps.map(n => Math.max(1, layer[n.id]))) + 1;
  const next = clone(graph);
  const heights: Record<number, number> = {};
  for (const n of next.nodes) {
    const col = n.kind === 'input' ? 0 : n.kind === 'output' ? last : Math.max(1, layer[n.id]);
    const y = heights[col] ?? 0;
    heights[col] = y + nodeHeight(n) + ROW_GAP;
    n.position = [col * LAYER_GAP, y];
  }
  return next;
}

/** Undo and redo over whole graphs (they are small). */
export class History {
  private _past: IGraph[] = [];
  private _future: IGraph[] = [];

  push(previous: IGraph): void {
    this._past.push(previous);
    if (this._past.length > 200) {
      this._past.shift();
    }
    this._future = [];
  }

  undo(current: IGraph): IGraph | null {
    const previous = this._past.pop();
    if (!previous) {
      return null;
    }
    this._future.push(current);
    return previous;
  }

  redo(current: IGraph): IGraph | null {
    const next = this._future.pop();
    if (!next) {
      return null;
    }
    this._past.push(current);
    return next;
  }

  get canUndo(): boolean {
    return this._past.length > 0;
  }

  get canRedo(): boolean {
    return this._future.length > 0;
  }

  clear(): void {
    this._past = [];
    this._future = [];
  }
}
