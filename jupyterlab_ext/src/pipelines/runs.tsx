/**
 * The runs viewer (main area): the user's runs, updating live, and one run's page: its workflow
 * graph coloured by step state (live over `GET runs/<id>/events`), step logs, inputs, outputs,
 * provenance, cancel and re-run.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  cancelRun,
  followEvents,
  getPipeline,
  getRun,
  listRuns,
  provenanceURL,
  rerun,
  runLog
} from './client';
import { pathOf, workspacePath } from './form';
import { IGraphStep, RunGraph } from './graph';
import { FINAL_STATES, IPipeline, IRun, IRunEvent } from './types';
import { errorMessage } from '../api';

export interface IRunsViewOptions {
  /** The workspace root on the server, to open outputs by their workspace path. */
  root: string;
  /** Open a workspace file (docmanager:open). */
  openFile: (path: string) => void;
  /** Show a workspace path in the file browser (filebrowser:go-to-path). */
  showInBrowser: (path: string) => void;
  /** Open the launch dialog pre-filled with a run's inputs. */
  relaunch: (pipeline: IPipeline, inputs: Record<string, unknown>) => void;
  /** Told which run is shown (`null`: the list), so that a reload can show it again. */
  onShow?: (id: string | null) => void;
}

/** The widget inside the runs viewer's `MainAreaWidget`; `showRun(id)` opens a run's page. */
export class RunsView extends ReactWidget {
  private _selected: string | null = null;

  constructor(private readonly _options: IRunsViewOptions) {
    super();
    this.addClass('dl-panel');
    this.addClass('dl-runs-view');
    this.node.dataset.testid = 'dl-runs-view';
  }

  /** The run shown, or `null` for the list of runs. */
  get selected(): string | null {
    return this._selected;
  }

  /** Show the run `id`, or the list of runs with `null`. */
  showRun(id: string | null): void {
    this._selected = id;
    this.update();
    this._options.onShow?.(id);
  }

  render(): JSX.Element {
    return (
      <RunsApp {...this._options} selected={this._selected} select={id => this.showRun(id)} />
    );
  }
}

interface IRunsAppProps extends IRunsViewOptions {
  selected: string | null;
  select: (id: string | null) => void;
}

function RunsApp(props: IRunsAppProps): JSX.Element {
  return props.selected ? (
    <RunPage key={props.selected} {...props} id={props.selected} />
  ) : (
    <RunList select={props.select} />
  );
}

function isFinal(state: string): boolean {
  return FINAL_STATES.includes(state);
}

/** `1 min 5 s` from two ISO times (the second one defaults to now). */
export function duration(started: string | null, finished: string | null): string {
  if (!started) {
    return '—';
  }
  const end = finished ? Date.parse(finished) : Date.now();
  const seconds = Math.max(0, Math.round((end - Date.parse(started)) / 1000));
  if (seconds < 60) {
    return `${seconds} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${seconds % 60} s`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function when(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

function StateBadge(props: { state: string }): JSX.Element {
  return (
    <span className="dl-state" data-state={props.state}>
      {props.state}
    </span>
  );
}

/** Poll `call` every `ms` while mounted (and while `active`). */
function useInterval(call: () => void, ms: number, active = true): void {
  const saved = React.useRef(call);
  saved.current = call;
  React.useEffect(() => {
    if (!active) {
      return;
    }
    const timer = setInterval(() => saved.current(), ms);
    return () => clearInterval(timer);
  }, [ms, active]);
}

function RunList(props: { select: (id: string) => void }): JSX.Element {
  const [runs, setRuns] = React.useState<IRun[] | null>(null);
  const [error, setError] = React.useState('');
  const load = React.useCallback(async () => {
    try {
      setRuns((await listRuns()).runs);
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    }
  }, []);
  React.useEffect(() => void load(), [load]);
  // Runs started elsewhere (a terminal, another tab) show up too, so the list is polled, while
  // it can be seen (a hidden tab or browser window asks nothing).
  const node = React.useRef<HTMLDivElement>(null);
  useInterval(() => {
    if (!document.hidden && node.current && node.current.getClientRects().length > 0) {
      void load();
    }
  }, 2000);
  return (
    <div className="dl-runs" ref={node}>
      <h2 className="dl-panel-title">My pipeline runs</h2>
      {error && (
        <div className="dl-error" role="alert">
          {error}
        </div>
      )}
      {runs && runs.length === 0 && <p>No runs yet: launch a pipeline from the Pipelines panel.</p>}
      {runs && runs.length > 0 && (
        <table className="dl-table" data-testid="dl-run-list">
          <caption className="dl-visually-hidden">Your pipeline runs, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Pipeline</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {runs.map(run => (
              <tr key={run.id} data-testid="dl-run-row" data-run={run.id} data-state={run.state}>
                <td>
                  <button
                    type="button"
                    className="dl-link"
                    aria-label={`Open run ${run.id} of ${run.pipeline}`}
                    onClick={() => props.select(run.id)}
                  >
                    {run.id.slice(0, 8)}
                  </button>
                </td>
                <td>{run.pipeline}</td>
                <td>
                  <StateBadge state={run.state} />
                </td>
                <td>{when(run.started || run.created)}</td>
                <td>{duration(run.started, run.finished)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** Files and folders of a run's output object, flattened, with their output name. */
function outputFiles(outputs: Record<string, unknown> | null): { name: string; value: any }[] {
  const found: { name: string; value: any }[] = [];
  const walk = (name: string, value: unknown) => {
    if (Array.isArray(value)) {
      value.forEach(v => walk(name, v));
    } else if (value && typeof value === 'object') {
      const obj = value as Record<string, unknown>;
      if (obj.class === 'File' || obj.class === 'Directory') {
        found.push({ name, value: obj });
      }
    } else if (value !== null && value !== undefined) {
      found.push({ name, value });
    }
  };
  Object.entries(outputs || {}).forEach(([k, v]) => walk(k, v));
  return found;
}

function showValue(value: unknown, root: string): string {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    if (obj.class === 'File' || obj.class === 'Directory') {
      return workspacePath(pathOf(obj), root);
    }
  }
  if (Array.isArray(value)) {
    return value.map(v => showValue(v, root)).join(', ');
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

interface IRunPageProps extends IRunsAppProps {
  id: string;
}

function RunPage(props: IRunPageProps): JSX.Element {
  const { id, root } = props;
  const [run, setRun] = React.useState<IRun | null>(null);
  const [pipeline, setPipeline] = React.useState<IPipeline | null>(null);
  const [live, setLive] = React.useState<Record<string, string>>({});
  const [error, setError] = React.useState('');
  const [step, setStep] = React.useState('');
  const [log, setLog] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [following, setFollowing] = React.useState<'stream' | 'poll' | ''>('');

  const refresh = React.useCallback(async () => {
    try {
      const fresh = await getRun(id);
      setRun(fresh);
      return fresh;
    } catch (e) {
      setError(errorMessage(e));
      return null;
    }
  }, [id]);

  // Load the run, then follow its events until it ends; if the stream cannot be read, poll.
  React.useEffect(() => {
    const abort = new AbortController();
    const onEvent = (event: IRunEvent) => {
      if (event.kind === 'step' && event.step && event.state) {
        setLive(current => ({ ...current, [event.step!]: event.state! }));
      } else if (event.kind === 'run' || event.kind === 'final' || event.kind === 'end') {
        void refresh();
      }
    };
    void (async () => {
      const first = await refresh();
      if (!first) {
        return;
      }
      getPipeline(first.pipeline).then(setPipeline, () => setPipeline(null));
      if (isFinal(first.state)) {
        return;
      }
      setFollowing('stream');
      const how = await followEvents(id, onEvent, abort.signal);
      if (how === 'failed' && !abort.signal.aborted) {
        setFollowing('poll');
      } else {
        setFollowing('');
        void refresh();
      }
    })();
    return () => abort.abort();
  }, [id, refresh]);

  useInterval(
    () => {
      void refresh().then(r => r && isFinal(r.state) && setFollowing(''));
    },
    2000,
    following === 'poll'
  );

  const active = run !== null && !isFinal(run.state);
  const loadLog = React.useCallback(async () => {
    try {
      setLog(await runLog(id, step || undefined));
    } catch (e) {
      setLog(`Could not read the log: ${errorMessage(e)}`);
    }
  }, [id, step]);
  React.useEffect(() => void loadLog(), [loadLog, run?.state]);
  useInterval(() => void loadLog(), 2000, active);

  if (!run) {
    return (
      <div className="dl-run-page">
        <BackButton select={props.select} />
        {error ? (
          <div className="dl-error" role="alert">
            {error}
          </div>
        ) : (
          <p>Loading run {id}…</p>
        )}
      </div>
    );
  }

  // The graph's steps: the pipeline's, in its order, then any others cwltool reported (a lone
  // CommandLineTool has one job named after the tool).
  const reported: Record<string, string> = {};
  for (const s of run.steps || []) {
    reported[s.name] = s.state;
  }
  Object.assign(reported, live);
  const names = [...(pipeline?.steps || [])];
  Object.keys(reported).forEach(n => names.includes(n) || names.push(n));
  // cwltool says nothing more about a step once the run is stopped: one still "running" then
  // ended with the run.
  const ended = run.state === 'cancelled' ? 'cancelled' : 'interrupted';
  const steps: IGraphStep[] = names.map(name => {
    const state = reported[name] || (isFinal(run.state) ? 'not run' : 'waiting');
    return { name, state: isFinal(run.state) && state === 'running' ? ended : state };
  });
  const stepInfo = Object.fromEntries((run.steps || []).map(s => [s.name, s]));

  const act = async (what: () => Promise<void>) => {
    setBusy(true);
    setError('');
    try {
      await what();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };

  const outputs = outputFiles(run.outputs);
  return (
    <div className="dl-run-page" data-testid="dl-run-page" data-run={run.id} data-state={run.state}>
      <BackButton select={props.select} />
      <h2 className="dl-panel-title">
        {pipeline?.label || run.pipeline} <StateBadge state={run.state} />
      </h2>
      <p className="dl-muted">
        Run <code>{run.id}</code> of <code>{run.pipeline}</code> · started{' '}
        {when(run.started)} · {duration(run.started, run.finished)}
        {run.rerun_of ? ` · re-run of ${run.rerun_of.slice(0, 8)}` : ''}
        {following === 'poll' ? ' · live events unavailable, refreshing every 2 s' : ''}
      </p>
      {run.exit_reason && run.state !== 'success' && (
        <p className={run.state === 'failed' ? 'dl-error' : 'dl-note'} role="status">
          {run.exit_reason}
        </p>
      )}
      {error && (
        <div className="dl-error" role="alert">
          {error}
        </div>
      )}
      <div className="dl-actions" role="group" aria-label="Run actions">
        {active && (
          <button
            type="button"
            className="dl-button"
            disabled={busy || run.state === 'cancelling'}
            onClick={() => void act(async () => setRun(await cancelRun(run.id)))}
          >
            Cancel run
          </button>
        )}
        <button
          type="button"
          className="dl-button"
          disabled={busy}
          onClick={() => void act(async () => props.select((await rerun(run.id)).id))}
        >
          Re-run
        </button>
        <button
          type="button"
          className="dl-button"
          disabled={busy}
          onClick={() =>
            void act(async () =>
              props.relaunch(pipeline || (await getPipeline(run.pipeline)), run.inputs)
            )
          }
        >
          Re-run with changed inputs…
        </button>
        {isFinal(run.state) && (
          <a className="dl-button" href={provenanceURL(run.id)} download>
            Download provenance
          </a>
        )}
      </div>

      <h3>Steps</h3>
      <RunGraph
        steps={steps}
        links={(pipeline?.links || []).filter(l => names.includes(l.from) && names.includes(l.to))}
        selected={step}
        onSelect={setStep}
      />
      <table className="dl-table" data-testid="dl-step-table">
        <caption className="dl-visually-hidden">Steps of this run</caption>
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">State</th>
            <th scope="col">Duration</th>
            <th scope="col">Peak memory</th>
            <th scope="col">Log</th>
          </tr>
        </thead>
        <tbody>
          {steps.map(s => (
            <tr key={s.name}>
              <td>{s.name}</td>
              <td>
                <StateBadge state={s.state} />
                {stepInfo[s.name]?.message && (
                  <span className="dl-step-message"> {stepInfo[s.name].message}</span>
                )}
              </td>
              <td>
                {duration(
                  stepInfo[s.name]?.started ?? null,
                  stepInfo[s.name]?.finished ?? run.finished
                )}
              </td>
              <td>
                {stepInfo[s.name]?.peak_memory_mib != null
                  ? `${stepInfo[s.name].peak_memory_mib} MiB`
                  : '—'}
              </td>
              <td>
                <button
                  type="button"
                  className="dl-link"
                  aria-pressed={step === s.name}
                  aria-label={`Show the log of step ${s.name}`}
                  onClick={() => setStep(s.name)}
                >
                  Log
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <h3 id={`dl-log-title-${run.id}`}>
        {step ? `Log of step ${step}` : 'Log of the run'}
        {step && (
          <button type="button" className="dl-link dl-log-all" onClick={() => setStep('')}>
            show the whole run's log
          </button>
        )}
      </h3>
      <pre
        className="dl-log"
        data-testid="dl-log"
        tabIndex={0}
        aria-labelledby={`dl-log-title-${run.id}`}
      >
        {log || '(empty)'}
      </pre>

      <h3>Outputs</h3>
      {outputs.length === 0 ? (
        <p className="dl-muted">
          {isFinal(run.state) ? 'No outputs.' : 'Outputs appear when the run ends.'}
        </p>
      ) : (
        <ul className="dl-outputs">
          {outputs.map(({ name, value }, i) => {
            const isPath = value && typeof value === 'object';
            const path = isPath ? workspacePath(pathOf(value), root) : '';
            const inside = isPath && !path.startsWith('/');
            return (
              <li key={`${name}-${i}`} data-testid="dl-output" data-output={name}>
                <strong>{name}</strong>:{' '}
                <code>{isPath ? value.basename || path : showValue(value, root)}</code>
                {isPath && inside && value.class === 'File' && (
                  <button
                    type="button"
                    className="dl-button"
                    aria-label={`Open output ${name} (${value.basename || path})`}
                    onClick={() => props.openFile(path)}
                  >
                    Open
                  </button>
                )}
                {isPath && inside && (
                  <button
                    type="button"
                    className="dl-button"
                    aria-label={`Show output ${name} in the file browser`}
                    onClick={() => props.showInBrowser(path)}
                  >
                    Show in file browser
                  </button>
                )}
                {isPath && !inside && (
                  <span className="dl-muted"> ({path}, outside the workspace)</span>
                )}
              </li>
            );
          })}
        </ul>
      )}

      <h3>Inputs</h3>
      <dl className="dl-inputs" data-testid="dl-run-inputs">
        {Object.entries(run.inputs || {}).map(([k, v]) => (
          <React.Fragment key={k}>
            <dt>{k}</dt>
            <dd>
              <code>{showValue(v, root)}</code>
            </dd>
          </React.Fragment>
        ))}
      </dl>
    </div>
  );
}

function BackButton(props: { select: (id: string | null) => void }): JSX.Element {
  return (
    <button type="button" className="dl-link dl-back" onClick={() => props.select(null)}>
      ← All runs
    </button>
  );
}
