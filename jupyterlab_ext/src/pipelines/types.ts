/**
 * What the pipelines and runs endpoints answer (`jupyterlab_ext/handlers/pipelines.py`,
 * `runs.py`), as the Pipelines panel and the runs viewer use it.
 */

/** A CWL type as the server normalises it: a name, a union (list) or an array/enum/record. */
export type CWLType =
  | string
  | CWLType[]
  | { type: 'array'; items: CWLType }
  | { type: 'enum'; symbols: string[] }
  | { type: 'record'; fields: { name: string; type: CWLType }[] };

/** One input (or output) of a pipeline. */
export interface IPipelineParameter {
  id: string;
  type: CWLType;
  type_label: string;
  label: string | null;
  doc: string | null;
  format: string[];
  default: unknown;
  optional: boolean;
}

/** A catalogue entry as `GET pipelines?q=` lists it. */
export interface IPipelineSummary {
  id: string;
  mission: string;
  class: string;
  cwlVersion: string;
  label: string | null;
  doc: string | null;
  keywords: string[];
  authors: string[];
  input_types: string[];
}

/** `GET pipelines/<id>`: the entry with its inputs, outputs and steps. */
export interface IPipeline extends IPipelineSummary {
  inputs: IPipelineParameter[];
  outputs: IPipelineParameter[];
  steps: string[];
  /** `to` reads an output of `from` (absent from servers older than the graph). */
  links?: { from: string; to: string }[];
}

export interface IPipelineSearch {
  pipelines: IPipelineSummary[];
  problems: { path: string; reason: string }[];
}

/** Run states (`datalabs_pipelines.runs.RUN_STATES`). */
export type RunState = 'queued' | 'running' | 'success' | 'failed' | 'cancelling' | 'cancelled';

export const FINAL_STATES: readonly string[] = ['success', 'failed', 'cancelled'];

/** One step of a run as cwltool reported it. */
export interface IStep {
  name: string;
  state: string;
  started: string | null;
  finished: string | null;
  peak_memory_mib: number | null;
  /** Why the step ended as it did, when the executor knows more than cwltool said. */
  message?: string | null;
}

export interface IRun {
  id: string;
  user: string;
  pipeline: string;
  inputs: Record<string, unknown>;
  state: RunState;
  created: string | null;
  started: string | null;
  finished: string | null;
  outdir: string;
  exit_code: number | null;
  exit_reason: string | null;
  outputs: Record<string, unknown> | null;
  rerun_of: string | null;
  steps?: IStep[];
}

export interface IRunList {
  runs: IRun[];
}

/** One event of `GET runs/<id>/events` (the JSON in its `data:` line). */
export interface IRunEvent {
  kind: string;
  time?: number;
  step?: string;
  state?: string;
  message?: string;
  peak_memory_mib?: number;
  cached?: boolean;
}

/** A 400 from `POST runs`: what is wrong with which input. */
export interface IInputProblem {
  input: string;
  message: string;
}
