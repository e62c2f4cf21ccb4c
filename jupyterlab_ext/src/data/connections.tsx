/**
 * The "Connections" part of the Data panel: the user's own storage. A form per backend is
 * generated from `GET backends`; secrets are typed into password inputs, sent once, and never
 * shown back (the server answers with them redacted).
 */
import React, { useEffect, useId, useState } from 'react';

import { errorMessage, requestAPI, sendJSON } from '../api';
import { ActionButton, BrokenMount, MountActions } from './controls';
import { IDataActions } from './volumes';
import { IBackend, IConnection, INewConnection } from './types';

/** Options a person recognises a connection by (never a secret). */
function where(connection: IConnection, backend: IBackend | undefined): string {
  const secrets = new Set(backend?.secrets ?? []);
  for (const key of ['url', 'host', 'server', 'endpoint', 'provider']) {
    const value = connection.options[key];
    if (value !== undefined && !secrets.has(key)) {
      return String(value);
    }
  }
  return '';
}

/** Required options first, then the others, secrets last (a password after its user name). */
function ordered(backend: IBackend): string[] {
  const rank = (o: string) =>
    backend.required.includes(o) ? 0 : backend.secrets.includes(o) ? 2 : 1;
  return [...backend.options].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** How the server shows a saved secret (`datalabs_volumes.remotes.REDACTED`). */
const REDACTED = '********';

const NAME_PATTERN = '[a-z0-9]([a-z0-9\\-]{0,38}[a-z0-9])?';

/** What an edit form starts from: the saved options, secrets left empty (never shown back). */
function editableValues(connection: IConnection, backend: IBackend | undefined) {
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(connection.options)) {
    // The server shows secrets as REDACTED; sent back, that keeps the saved one.
    if (!backend?.secrets.includes(key) && value !== REDACTED) {
      values[key] = String(value);
    }
  }
  return values;
}

/**
 * The "Add a connection" form for one backend at a time; given `existing`, the form that
 * changes that connection (`PATCH`): its name and storage type stay, a secret left empty is
 * kept as saved, and an emptied option is removed.
 */
export function ConnectionForm(props: {
  backends: IBackend[];
  existing?: IConnection;
  onCreated: (c: IConnection) => void;
  onCancel: () => void;
}): JSX.Element {
  const { backends, existing, onCreated, onCancel } = props;
  const id = useId();
  const [backendName, setBackendName] = useState(
    existing?.backend ?? backends[0]?.backend ?? ''
  );
  const backend = backends.find(b => b.backend === backendName);
  const [name, setName] = useState(existing?.name ?? '');
  const [values, setValues] = useState<Record<string, string>>(() =>
    existing ? editableValues(existing, backend) : {}
  );
  const [path, setPath] = useState(existing?.path ?? '');
  const [writable, setWritable] = useState(
    existing ? (existing.writable ?? !existing.read_only) : false
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');

  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    if (!backend) {
      return;
    }
    const options: Record<string, string | null> = {};
    for (const option of backend.options) {
      const value = values[option];
      if (value !== undefined && value !== '') {
        options[option] = value;
      } else if (existing && option in existing.options && !backend.secrets.includes(option)) {
        options[option] = null; // emptied: removed (a secret left empty is kept)
      }
    }
    setBusy(true);
    setError('');
    const saved = existing
      ? sendJSON<IConnection>(`connections/${encodeURIComponent(existing.name)}`, 'PATCH', {
          options,
          path,
          writable
        })
      : sendJSON<IConnection>('connections', 'POST', {
          name,
          backend: backend.backend,
          options,
          writable,
          ...(path ? { path } : {})
        } as INewConnection);
    saved
      .then(created => {
        // Forget the secrets as soon as the server has them.
        setValues({});
        onCreated(created);
      })
      .catch(e => setError(errorMessage(e)))
      .finally(() => setBusy(false));
  };

  const field = (option: string) => {
    const inputId = `${id}-${option}`;
    const required = backend?.required.includes(option) ?? false;
    const secret = backend?.secrets.includes(option) ?? false;
    const choices = backend?.choices[option];
    const value = values[option] ?? '';
    const set = (v: string) => setValues({ ...values, [option]: v });
    return (
      <div className="dl-form-row" key={`${backendName}-${option}`}>
        <label htmlFor={inputId} className="dl-label">
          {option}
          {required && <span aria-hidden="true"> *</span>}
          {secret && <span className="dl-muted"> (secret)</span>}
        </label>
        {choices ? (
          <select
            id={inputId}
            name={option}
            className="dl-input"
            value={value}
            required={required}
            aria-required={required}
            onChange={e => set(e.target.value)}
          >
            <option value="">{required ? '(choose)' : '(default)'}</option>
            {choices.map(c => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        ) : (
          <input
            id={inputId}
            name={option}
            className="dl-input"
            type={secret ? 'password' : 'text'}
            autoComplete={secret ? 'new-password' : 'off'}
            value={value}
            // Editing: a saved secret stays unless a new one is typed.
            required={required && !(secret && existing)}
            aria-required={required && !(secret && existing)}
            placeholder={secret && existing ? 'unchanged' : undefined}
            onChange={e => set(e.target.value)}
          />
        )}
      </div>
    );
  };

  return (
    <form
      className="dl-connection-form"
      data-testid="dl-connection-form"
      aria-label={existing ? `Edit ${existing.name}` : 'Add a connection'}
      onSubmit={submit}
      aria-busy={busy}
    >
      <div className="dl-form-row">
        <label htmlFor={`${id}-backend`} className="dl-label">
          Storage type
        </label>
        <select
          id={`${id}-backend`}
          name="backend"
          className="dl-input"
          value={backendName}
          disabled={existing !== undefined}
          onChange={e => {
            setBackendName(e.target.value);
            setValues({});
            setError('');
          }}
        >
          {backends.map(b => (
            <option key={b.backend} value={b.backend}>
              {b.title}
            </option>
          ))}
        </select>
      </div>
      <div className="dl-form-row">
        <label htmlFor={`${id}-name`} className="dl-label">
          Name<span aria-hidden="true"> *</span>
        </label>
        <input
          id={`${id}-name`}
          name="name"
          className="dl-input"
          type="text"
          required
          aria-required
          pattern={NAME_PATTERN}
          readOnly={existing !== undefined}
          title="lower-case letters, digits and dashes; it becomes the folder data/<name>"
          aria-describedby={`${id}-name-help`}
          value={name}
          onChange={e => setName(e.target.value)}
        />
        <span id={`${id}-name-help`} className="dl-muted dl-help">
          Appears as data/{name || '<name>'}
        </span>
      </div>
      {backend && ordered(backend).map(field)}
      <div className="dl-form-row">
        <label htmlFor={`${id}-path`} className="dl-label">
          Folder in the storage
        </label>
        <input
          id={`${id}-path`}
          name="path"
          className="dl-input"
          type="text"
          value={path}
          onChange={e => setPath(e.target.value)}
        />
      </div>
      <div className="dl-form-row dl-check">
        <input
          id={`${id}-writable`}
          name="writable"
          type="checkbox"
          checked={writable}
          onChange={e => setWritable(e.target.checked)}
        />
        <label htmlFor={`${id}-writable`}>Writable (read-only otherwise)</label>
      </div>
      {error && (
        <div className="dl-error" role="alert" data-testid="dl-form-error">
          {error}
        </div>
      )}
      <div className="dl-actions">
        <button type="submit" className="dl-button dl-primary" disabled={busy} aria-busy={busy}>
          {busy ? 'Testing and saving...' : 'Test and save'}
        </button>
        <button type="button" className="dl-button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}

type Busy = 'test' | 'attach' | 'detach' | 'delete' | null;

/** One saved connection and what can be done with it. */
function ConnectionRow(props: {
  connection: IConnection;
  backend: IBackend | undefined;
  backends: IBackend[];
  actions: IDataActions;
  onChanged: (c: IConnection) => void;
  onDeleted: (name: string) => void;
}): JSX.Element {
  const { connection, backend, backends, actions, onChanged, onDeleted } = props;
  const [busy, setBusy] = useState<Busy>(null);
  const [error, setError] = useState('');
  const [note, setNote] = useState('');
  const [confirming, setConfirming] = useState(false);
  const [editing, setEditing] = useState(false);
  const titleId = `dl-connection-title-${connection.name}`;
  const broken = connection.health?.state === 'broken';
  const base = `connections/${encodeURIComponent(connection.name)}`;

  const run = (action: Exclude<Busy, null>) => {
    setBusy(action);
    setError('');
    setNote('');
    const call =
      action === 'delete'
        ? requestAPI<void>(base, { method: 'DELETE' })
        : sendJSON<unknown>(`${base}/${action}`, 'POST');
    call
      .then(result => {
        if (action === 'delete') {
          actions.refreshFileBrowser(connection.mount);
          onDeleted(connection.name);
        } else if (action === 'test') {
          setNote('The connection works.');
        } else {
          onChanged(result as IConnection);
          actions.refreshFileBrowser(action === 'detach' ? connection.mount : undefined);
        }
      })
      .catch(e => setError(errorMessage(e)))
      .finally(() => {
        setBusy(null);
        setConfirming(false);
      });
  };

  return (
    <li
      className="dl-connection"
      data-name={connection.name}
      data-attached={connection.attached ? 'true' : 'false'}
      aria-labelledby={titleId}
    >
      <div className="dl-row-head">
        <span className="dl-volume-title" id={titleId}>
          {connection.name}
        </span>
        <span
          className={`dl-badge ${broken ? 'dl-badge-broken' : connection.attached ? 'dl-badge-on' : ''}`}
        >
          {broken ? 'broken' : connection.attached ? 'attached' : 'detached'}
        </span>
      </div>
      <div className="dl-muted dl-volume-meta">
        {backend?.title ?? connection.backend} · {where(connection, backend)}
        {connection.path ? ` · ${connection.path}` : ''} ·{' '}
        {connection.read_only ? 'read-only' : 'writable'}
      </div>
      <BrokenMount health={connection.health} />
      <div className="dl-actions">
        <MountActions
          mounted={connection.attached}
          path={connection.mount}
          busy={busy}
          run={run}
          openInFileBrowser={path => actions.openInFileBrowser(path)}
          describedBy={titleId}
        />
        <ActionButton
          action="test"
          label="Test"
          busyLabel="Testing..."
          busy={busy}
          run={run}
          describedBy={titleId}
        />
        <button
          type="button"
          className="dl-button"
          onClick={() => {
            setEditing(!editing);
            setNote('');
            setError('');
          }}
          // The server refuses to change a mounted connection: say so before, not after.
          disabled={busy !== null || connection.attached}
          title={connection.attached ? 'Detach it to change it' : undefined}
          aria-expanded={editing}
          aria-describedby={titleId}
        >
          Edit
        </button>
        {confirming ? (
          <>
            <ActionButton
              action="delete"
              label="Really delete"
              busyLabel="Deleting..."
              busy={busy}
              run={run}
              describedBy={titleId}
              className="dl-button dl-danger"
            />
            <button type="button" className="dl-button" onClick={() => setConfirming(false)}>
              Keep
            </button>
          </>
        ) : (
          <button
            type="button"
            className="dl-button"
            onClick={() => setConfirming(true)}
            disabled={busy !== null}
            aria-describedby={titleId}
          >
            Delete
          </button>
        )}
      </div>
      {editing && !connection.attached && (
        <ConnectionForm
          backends={backends}
          existing={connection}
          onCreated={changed => {
            setEditing(false);
            setNote('Saved: the connection works.');
            onChanged(changed);
          }}
          onCancel={() => setEditing(false)}
        />
      )}
      {note && (
        <div className="dl-ok" role="status">
          {note}
        </div>
      )}
      {error && (
        <div className="dl-error" role="alert" data-testid="dl-connection-error">
          {error}
        </div>
      )}
    </li>
  );
}

/** The connections section: `GET connections` and `GET backends` when it first shows. */
export function ConnectionsSection(props: {
  actions: IDataActions;
  reload: number;
}): JSX.Element {
  const { actions, reload } = props;
  const [connections, setConnections] = useState<IConnection[] | null>(null);
  const [backends, setBackends] = useState<IBackend[]>([]);
  const [error, setError] = useState('');
  const [adding, setAdding] = useState(false);

  useEffect(() => {
    let live = true;
    requestAPI<IConnection[]>('connections')
      .then(c => live && setConnections(c))
      .catch(e => live && setError(errorMessage(e)));
    requestAPI<IBackend[]>('backends')
      .then(b => live && setBackends(b))
      .catch(e => live && setError(errorMessage(e)));
    return () => {
      live = false;
    };
  }, [reload]);

  const replace = (changed: IConnection) =>
    setConnections(current => {
      const rest = (current ?? []).filter(c => c.name !== changed.name);
      return [...rest, changed].sort((a, b) => a.name.localeCompare(b.name));
    });

  return (
    <section className="dl-section" aria-labelledby="dl-connections-heading">
      <h2 id="dl-connections-heading" className="dl-heading">
        Connections
      </h2>
      <p className="dl-muted">Your own storage, mounted at data/&lt;name&gt;.</p>
      {error && (
        <p className="dl-error" role="alert">
          {error}
        </p>
      )}
      {connections === null && !error && <p className="dl-muted">Loading connections...</p>}
      {connections !== null && connections.length === 0 && (
        <p className="dl-muted">No connections yet.</p>
      )}
      {connections !== null && connections.length > 0 && (
        <ul className="dl-rows" aria-label="Your connections" data-testid="dl-connections">
          {connections.map(c => (
            <ConnectionRow
              key={c.name}
              connection={c}
              backend={backends.find(b => b.backend === c.backend)}
              backends={backends}
              actions={actions}
              onChanged={replace}
              onDeleted={name =>
                setConnections(current => (current ?? []).filter(x => x.name !== name))
              }
            />
          ))}
        </ul>
      )}
      {adding ? (
        <ConnectionForm
          backends={backends}
          onCreated={c => {
            replace(c);
            setAdding(false);
          }}
          onCancel={() => setAdding(false)}
        />
      ) : (
        <button
          type="button"
          className="dl-button dl-primary"
          data-testid="dl-add-connection"
          onClick={() => setAdding(true)}
          disabled={backends.length === 0}
        >
          Add a connection
        </button>
      )}
    </section>
  );
}
