/**
 * The Pipelines panel (left sidebar): search the pipeline catalogue and launch a pipeline.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { getPipeline, searchPipelines } from './client';
import { IPipeline, IPipelineSearch } from './types';
import { errorMessage } from '../api';

export interface IPipelinesPanelOptions {
  /** Open the launch dialog for a pipeline. */
  launch: (pipeline: IPipeline, opener: HTMLElement) => void;
  /** Open the runs viewer. */
  openRuns: () => void;
}

export class PipelinesPanel extends ReactWidget {
  constructor(private readonly _options: IPipelinesPanelOptions) {
    super();
    this.addClass('dl-panel');
    this.addClass('dl-pipelines-panel');
    this.node.dataset.testid = 'dl-pipelines-panel';
  }

  render(): JSX.Element {
    return <Catalogue {...this._options} />;
  }
}

function Catalogue(props: IPipelinesPanelOptions): JSX.Element {
  const [query, setQuery] = React.useState('');
  const [result, setResult] = React.useState<IPipelineSearch | null>(null);
  const [error, setError] = React.useState('');
  const [opening, setOpening] = React.useState('');

  // Answers may arrive out of order while the user types: only the latest search is shown.
  const latest = React.useRef(0);
  const search = React.useCallback(async (q: string) => {
    const mine = ++latest.current;
    try {
      const found = await searchPipelines(q);
      if (mine === latest.current) {
        setResult(found);
        setError('');
      }
    } catch (e) {
      if (mine === latest.current) {
        setError(errorMessage(e));
      }
    }
  }, []);

  // Search as the user types, a moment after they stop.
  React.useEffect(() => {
    const timer = setTimeout(() => void search(query), 250);
    return () => clearTimeout(timer);
  }, [query, search]);

  const launch = async (id: string, opener: HTMLElement) => {
    if (opening) {
      return;
    }
    setOpening(id);
    try {
      props.launch(await getPipeline(id), opener);
      setError('');
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setOpening('');
    }
  };

  return (
    <div className="dl-pipelines">
      <div className="dl-panel-header">
        <h2 className="dl-panel-title">Pipelines</h2>
        <button type="button" className="dl-button" onClick={props.openRuns}>
          My runs
        </button>
      </div>
      <form
        role="search"
        className="dl-search"
        onSubmit={event => {
          event.preventDefault();
          void search(query);
        }}
      >
        <label htmlFor="dl-pipelines-search" className="dl-visually-hidden">
          Search pipelines
        </label>
        <input
          id="dl-pipelines-search"
          type="search"
          className="dl-input"
          placeholder="Search pipelines (e.g. PDS4, plot, csv)"
          value={query}
          onChange={e => setQuery(e.target.value)}
        />
      </form>
      {error && (
        <div className="dl-error" role="alert">
          {error}
        </div>
      )}
      {result && (
        <p className="dl-muted" aria-live="polite">
          {result.pipelines.length} pipeline{result.pipelines.length === 1 ? '' : 's'}
          {query ? ` match “${query}”` : ' in the catalogue'}
        </p>
      )}
      <ul className="dl-pipeline-list" aria-label="Pipelines">
        {result?.pipelines.map(p => (
          <li key={p.id} className="dl-pipeline" data-pipeline={p.id}>
            <h3 className="dl-pipeline-label">{p.label || p.id}</h3>
            <div className="dl-muted">
              <code>{p.id}</code> · {p.class}
            </div>
            {p.doc && <p className="dl-pipeline-doc">{p.doc}</p>}
            {p.keywords.length > 0 && (
              <ul className="dl-keywords" aria-label="Keywords">
                {p.keywords.map(k => (
                  <li key={k} className="dl-keyword">
                    {k}
                  </li>
                ))}
              </ul>
            )}
            <div className="dl-muted">Inputs: {p.input_types.join(', ') || 'none'}</div>
            <button
              type="button"
              className="jp-mod-styled jp-mod-accept dl-launch-button"
              aria-label={`Launch ${p.label || p.id}`}
              // Not disabled while loading: a disabled button would lose the focus, which the
              // dialog gives back when it closes.
              aria-busy={opening === p.id}
              onClick={event => void launch(p.id, event.currentTarget)}
            >
              Launch…
            </button>
          </li>
        ))}
      </ul>
      {result && result.problems.length > 0 && (
        <details className="dl-problems">
          <summary>
            {result.problems.length} catalogue file{result.problems.length === 1 ? '' : 's'} could
            not be read
          </summary>
          <ul>
            {result.problems.map(p => (
              <li key={p.path}>
                <code>{p.path}</code>: {p.reason}
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}
