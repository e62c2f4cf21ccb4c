/**
 * The archive volumes part of the Data panel: search, groups by mission, attach/detach,
 * a preview listing before attaching, and "Open in file browser" once mounted.
 */
import React, { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { errorMessage, requestAPI, sendJSON } from '../api';
import { StateFilter, describeSize, formatBytes, groupRows, pagePath, withVolume } from './filter';
import { BrokenMount, MountActions } from './controls';
import { IListing, IVolume, IVolumePage } from './types';

/** Rows rendered at first, and added by each "Show more" (a sidebar shows about six). */
export const ROW_BUDGET = 50;

/** What the panel needs from JupyterLab. */
export interface IDataActions {
  /** Show `path` (relative to the server's root) in the file browser. */
  openInFileBrowser(path: string): void;
  /** Tell the file browser that `data/` changed; `gone` is a folder that was just unmounted. */
  refreshFileBrowser(gone?: string): void;
}


/** A folder listing of a volume, read on the server without mounting it. */
function VolumePreview(props: { volume: IVolume }): JSX.Element {
  const { volume } = props;
  const [path, setPath] = useState('');
  const [listing, setListing] = useState<IListing | null>(null);
  const [error, setError] = useState('');

  useEffect(() => {
    let live = true;
    setError('');
    requestAPI<IListing>(
      `volumes/${encodeURIComponent(volume.id)}/browse?path=${encodeURIComponent(path)}`
    )
      .then(l => live && setListing(l))
      .catch(e => live && setError(errorMessage(e)));
    return () => {
      live = false;
    };
  }, [volume.id, path]);

  const up = path.split('/').slice(0, -1).join('/');
  return (
    <div className="dl-preview" data-testid="dl-preview" aria-live="polite">
      <div className="dl-preview-path">
        {path !== '' && (
          <button
            type="button"
            className="dl-button dl-link"
            onClick={() => setPath(up)}
            aria-label="Up one folder"
          >
            ..
          </button>
        )}
        <span>
          {volume.id}/{path}
        </span>
      </div>
      {error && (
        <p className="dl-error" role="alert">
          {error}
        </p>
      )}
      {!listing && !error && <p className="dl-muted">Loading...</p>}
      {listing && (
        <ul className="dl-preview-entries" aria-label={`Files in ${volume.id}/${path}`}>
          {listing.entries.length === 0 && <li className="dl-muted">(empty folder)</li>}
          {listing.entries.map(e => (
            <li key={e.name} className="dl-preview-entry" data-type={e.type}>
              {e.type === 'directory' ? (
                <button
                  type="button"
                  className="dl-button dl-link"
                  onClick={() => setPath(path ? `${path}/${e.name}` : e.name)}
                >
                  {e.name}/
                </button>
              ) : (
                <span>{e.name}</span>
              )}
              {e.size !== null && e.type === 'file' && (
                <span className="dl-muted"> {formatBytes(e.size)}</span>
              )}
            </li>
          ))}
          {listing.truncated && <li className="dl-muted">(more entries not shown)</li>}
        </ul>
      )}
    </div>
  );
}

interface IVolumeRowProps {
  volume: IVolume;
  actions: IDataActions;
  onChanged: (volume: IVolume) => void;
}

/** One volume: what it is, its state, and what can be done with it. */
const VolumeRow = React.memo(function VolumeRow(props: IVolumeRowProps): JSX.Element {
  const { volume, actions, onChanged } = props;
  const [busy, setBusy] = useState<'attach' | 'detach' | null>(null);
  const [error, setError] = useState('');
  const [preview, setPreview] = useState(false);
  const broken = volume.health?.state === 'broken';
  const titleId = `dl-volume-title-${volume.id}`;

  const run = (action: 'attach' | 'detach') => {
    setBusy(action);
    setError('');
    sendJSON<IVolume>(`volumes/${encodeURIComponent(volume.id)}/${action}`, 'POST')
      .then(v => {
        onChanged(v);
        actions.refreshFileBrowser(action === 'detach' ? volume.path : undefined);
      })
      .catch(e => setError(errorMessage(e)))
      .finally(() => setBusy(null));
  };

  return (
    <li
      className="dl-volume"
      data-id={volume.id}
      data-mounted={volume.mounted ? 'true' : 'false'}
      aria-labelledby={titleId}
    >
      <div className="dl-row-head">
        <span className="dl-volume-title" id={titleId}>
          {volume.title}
        </span>
        <span
          className={`dl-badge ${broken ? 'dl-badge-broken' : volume.mounted ? 'dl-badge-on' : ''}`}
          data-testid="dl-volume-state"
        >
          {broken ? 'broken' : volume.mounted ? 'attached' : 'available'}
        </span>
      </div>
      <div className="dl-muted dl-volume-meta">
        <code>{volume.id}</code> · {describeSize(volume.size)}
        {volume.versions.length > 1 && <> · versions {volume.versions.join(', ')}</>}
      </div>
      {volume.description && <div className="dl-volume-description">{volume.description}</div>}
      <BrokenMount health={volume.health} />
      <div className="dl-actions">
        <MountActions
          mounted={volume.mounted}
          path={volume.path}
          busy={busy}
          run={run}
          openInFileBrowser={path => actions.openInFileBrowser(path)}
          describedBy={titleId}
        />
        <button
          type="button"
          className="dl-button"
          onClick={() => setPreview(!preview)}
          aria-expanded={preview}
          aria-describedby={titleId}
        >
          {preview ? 'Hide files' : 'Preview files'}
        </button>
      </div>
      {error && (
        <div className="dl-error" role="alert" data-testid="dl-volume-error">
          {error}
        </div>
      )}
      {preview && <VolumePreview volume={volume} />}
    </li>
  );
});

/**
 * The volumes section: asks the server for one page of the volumes (searched, filtered and
 * grouped there) when it first shows and whenever the search, the filter, the shut groups or
 * the rows wanted change; while the next page is on its way the last one stays on screen.
 */
export function VolumesSection(props: { actions: IDataActions; reload: number }): JSX.Element {
  const { actions, reload } = props;
  const [page, setPage] = useState<{ query: string; data: IVolumePage } | null>(null);
  const [loadError, setLoadError] = useState('');
  const [query, setQuery] = useState('');
  const [state, setState] = useState<StateFilter>('all');
  const [collapsed, setCollapsed] = useState<ReadonlySet<string>>(new Set());
  const [limit, setLimit] = useState(ROW_BUDGET);
  // Bumped after an attach or detach: the counts and the state filter may have moved.
  const [changes, setChanges] = useState(0);

  // Answers may arrive out of order while the user types: only the latest request is shown.
  const latest = useRef(0);
  useEffect(() => {
    const mine = ++latest.current;
    requestAPI<IVolumePage>(pagePath({ query, state, limit, collapsed }))
      .then(data => {
        if (mine === latest.current) {
          setPage({ query, data });
          setLoadError('');
        }
      })
      .catch(e => mine === latest.current && setLoadError(errorMessage(e)));
  }, [query, state, limit, collapsed, reload, changes]);

  const groups = useMemo(() => (page ? groupRows(page.data) : []), [page]);
  const shown = page?.data;

  const onChanged = useCallback((changed: IVolume) => {
    setPage(current => current && { ...current, data: withVolume(current.data, changed) });
    setChanges(n => n + 1);
  }, []);

  const toggle = (mission: string) => {
    const next = new Set(collapsed);
    if (!next.delete(mission)) {
      next.add(mission);
    }
    setCollapsed(next);
  };

  return (
    <section className="dl-section" aria-labelledby="dl-volumes-heading">
      <h2 id="dl-volumes-heading" className="dl-heading">
        Archive volumes
      </h2>
      <div className="dl-filters">
        <label className="dl-field">
          <span className="dl-label">Search volumes</span>
          <input
            type="search"
            className="dl-input"
            data-testid="dl-search"
            placeholder="title, id, mission, description"
            value={query}
            onChange={e => {
              setQuery(e.target.value);
              setLimit(ROW_BUDGET);
            }}
          />
        </label>
        <label className="dl-field">
          <span className="dl-label">Show</span>
          <select
            className="dl-input"
            data-testid="dl-state-filter"
            value={state}
            onChange={e => {
              setState(e.target.value as StateFilter);
              setLimit(ROW_BUDGET);
            }}
          >
            <option value="all">all</option>
            <option value="attached">attached</option>
            <option value="available">not attached</option>
            <option value="broken">broken</option>
          </select>
        </label>
      </div>
      {loadError && (
        <p className="dl-error" role="alert">
          {loadError}
        </p>
      )}
      {shown === undefined && !loadError && <p className="dl-muted">Loading volumes...</p>}
      <div
        data-testid="dl-volume-list"
        data-ready={shown !== undefined ? 'true' : 'false'}
        data-query={page?.query ?? ''}
        data-matching={shown?.matching ?? 0}
      >
        {shown !== undefined && (
          <p className="dl-muted dl-count" role="status">
            {shown.matching === shown.total
              ? `${shown.total} volume${shown.total === 1 ? '' : 's'}`
              : `${shown.matching} of ${shown.total} volumes match`}
          </p>
        )}
        {groups.map(g => (
          <div className="dl-group" key={g.mission} data-mission={g.mission}>
            <h3 className="dl-group-heading">
              <button
                type="button"
                className="dl-button dl-group-toggle"
                aria-expanded={!g.collapsed}
                onClick={() => toggle(g.mission)}
              >
                <span aria-hidden="true">{g.collapsed ? '▸' : '▾'}</span> {g.mission || 'Other'}{' '}
                <span className="dl-muted">({g.total})</span>
              </button>
            </h3>
            {g.rows.length > 0 && (
              <ul className="dl-rows" aria-label={`${g.mission} volumes`}>
                {g.rows.map(v => (
                  <VolumeRow key={v.id} volume={v} actions={actions} onChanged={onChanged} />
                ))}
              </ul>
            )}
          </div>
        ))}
        {shown !== undefined && shown.hidden > 0 && (
          <button
            type="button"
            className="dl-button dl-show-more"
            data-testid="dl-show-more"
            onClick={() => setLimit(limit + ROW_BUDGET)}
          >
            Show {Math.min(shown.hidden, ROW_BUDGET)} more ({shown.hidden} not shown)
          </button>
        )}
      </div>
    </section>
  );
}
