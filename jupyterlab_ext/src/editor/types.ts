/**
 * The editor's REST API types (`jupyterlab_ext/handlers/editor.py`), as the graph JSON of
 * `datalabs_pipelines/graph.py` (`Graph.to_json()`) has them.
 */

export type NodeKind = 'input' | 'output' | 'step';

export interface IPort {
  id: string;
  type: unknown;
  type_label: string;
  optional: boolean;
  /** A step input the step lists in `in` (ports only known from the tool are not). */
  declared: boolean;
  default: unknown;
  has_default: boolean;
  value_from: string | null;
  link_merge: string | null;
  pick_value: string | null;
  source_list: boolean;
  extras: Record<string, unknown>;
}

export interface INode {
  id: string;
  kind: NodeKind;
  label: string | null;
  position: [number, number] | null;
  inputs: IPort[];
  outputs: IPort[];
  extras: Record<string, unknown>;
  run?: unknown;
  run_class?: string | null;
  subgraph?: IGraph | null;
  scatter?: string[];
  scatter_list?: boolean;
  scatter_method?: string | null;
  when?: string | null;
}

export interface IEdge {
  source: string;
  source_port: string;
  target: string;
  target_port: string;
}

export interface IGraph {
  id: string | null;
  path: string | null;
  extras: Record<string, unknown>;
  envelope: Record<string, unknown> | null;
  packed: unknown[] | null;
  main_index: number;
  /** The workflow's id in a packed (`$graph`) document, e.g. an EO application package. */
  process: string | null;
  nodes: INode[];
  edges: IEdge[];
}

export interface IProblem {
  message: string;
  line: number | null;
  node: string | null;
  port: string | null;
  edges: IEdge[];
}

export interface IGraphReply {
  path: string;
  graph: IGraph;
}

export interface ISaveReply extends IGraphReply {
  problems: IProblem[];
  valid: boolean;
}

export interface IConnectionCheck {
  allowed: boolean;
  reason: string | null;
  warning: string | null;
}

export interface IPalettePort {
  id: string;
  type_label: string;
}

export interface IPaletteTool {
  key: string;
  source: 'catalogue' | 'workspace';
  pipeline: string | null;
  path: string | null;
  class: string;
  label: string;
  doc: string | null;
  inputs: IPalettePort[];
  outputs: IPalettePort[];
}

export interface IPublishRequest {
  path: string;
  /** The workflow of a packed document (`GET editor/graph` gave it as `graph.process`). */
  process?: string | null;
  name: string;
  label: string;
  doc: string;
  keywords: string;
  author: string;
}

/** A run's step as `GET runs/<id>` has it. */
export interface IRunStep {
  name: string;
  state: string;
}

export interface IRunSummary {
  id: string;
  state: string;
  steps?: IRunStep[];
}
