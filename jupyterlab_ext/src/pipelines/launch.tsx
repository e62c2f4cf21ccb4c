/**
 * The launch dialog: a form generated from a pipeline's CWL inputs (`form.ts`), File and
 * Directory inputs picked from the workspace and mounted volumes with JupyterLab's file dialog.
 *
 * It is a modal of our own rather than an apputils `Dialog`: JupyterLab queues dialogs, so the
 * file dialog could not open while a `Dialog` is showing.
 */
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileDialog } from '@jupyterlab/filebrowser';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { APIError, errorMessage } from '../api';
import { launchRun } from './client';
import { FormValue, IField, fieldsFor, jobInputs, problemsByInput, valuesFrom } from './form';
import { IInputProblem, IPipeline, IRun } from './types';

export interface ILaunchOptions {
  pipeline: IPipeline;
  manager: IDocumentManager;
  /** The workspace root on the server (`PageConfig serverRoot`), to show paths relative to it. */
  root: string;
  /** A past run's inputs to start from ("re-run with changed inputs"). */
  job?: Record<string, unknown>;
  /** Called with the new run once the server accepted it. */
  onLaunched: (run: IRun) => void;
  /** The button that opened the dialog: the focus goes back to it on Cancel. */
  opener?: HTMLElement | null;
}

let counter = 0;

/** Open the launch dialog for `options.pipeline` (it closes itself on Cancel or launch). */
export function openLaunchDialog(options: ILaunchOptions): LaunchDialog {
  const dialog = new LaunchDialog(options);
  Widget.attach(dialog, document.body);
  return dialog;
}

export class LaunchDialog extends ReactWidget {
  /** Where the focus was before the dialog opened; it goes back there on Cancel. */
  private readonly _returnFocus: HTMLElement | null;

  constructor(private readonly _options: ILaunchOptions) {
    super();
    this._returnFocus = _options.opener ?? (document.activeElement as HTMLElement | null);
    this.addClass('dl-modal-backdrop');
    this.node.dataset.testid = 'dl-launch-dialog';
    this.node.addEventListener('keydown', event => this._trapTab(event));
  }

  /** Keep Tab inside the dialog (it is modal); the file dialog is a separate one on top. */
  private _trapTab(event: KeyboardEvent): void {
    if (event.key !== 'Tab') {
      return;
    }
    const focusable = Array.from(
      this.node.querySelectorAll<HTMLElement>(
        'input, select, textarea, button:not(:disabled), a[href], [tabindex="0"]'
      )
    );
    if (!focusable.length) {
      return;
    }
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // The first field gets the focus, as in any dialog (once React has rendered it), unless
    // the user is already in a field: on a loaded machine the timer fires late, and it took
    // the focus away from a field being typed in (the typing went on in the first field).
    setTimeout(() => {
      const active = document.activeElement;
      if (active && active !== this.node && this.node.contains(active)) {
        return;
      }
      const first = this.node.querySelector<HTMLElement>('input, select, textarea, button');
      first?.focus();
    }, 50);
  }

  /** Close; `restoreFocus` puts the focus back where it was (after Cancel or Escape). */
  close(restoreFocus = false): void {
    this.dispose();
    if (restoreFocus && this._returnFocus?.isConnected) {
      this._returnFocus.focus();
    }
  }

  render(): JSX.Element {
    return (
      <LaunchForm
        {...this._options}
        onClose={() => this.close(true)}
        onLaunched={run => {
          this.close();
          this._options.onLaunched(run);
        }}
      />
    );
  }
}

interface ILaunchFormProps extends ILaunchOptions {
  onClose: () => void;
}

function LaunchForm(props: ILaunchFormProps): JSX.Element {
  const { pipeline, manager, root } = props;
  const fields = React.useMemo(() => fieldsFor(pipeline.inputs, root), [pipeline, root]);
  const [values, setValues] = React.useState<Record<string, FormValue>>(() =>
    valuesFrom(fields, props.job, root)
  );
  const [problems, setProblems] = React.useState<Record<string, string[]>>({});
  const [error, setError] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [id] = React.useState(() => `dl-launch-${++counter}`);

  const setValue = (name: string, value: FormValue) =>
    setValues(current => ({ ...current, [name]: value }));

  const show = (list: IInputProblem[]) => setProblems(problemsByInput(list, fields));

  const submit = async () => {
    setError('');
    const { inputs, problems: local } = jobInputs(fields, values);
    if (local.length) {
      show(local);
      return;
    }
    setBusy(true);
    try {
      const run = await launchRun(pipeline.id, inputs);
      props.onLaunched(run);
    } catch (e) {
      setBusy(false);
      const body = e instanceof APIError ? e.body : {};
      const list = Array.isArray(body.problems) ? (body.problems as IInputProblem[]) : [];
      show(list);
      const marked = list.filter(p => fields.some(f => f.id === p.input)).length;
      const fix = `fix the ${marked === 1 ? 'problem' : `${marked} problems`} marked above`;
      setError(
        !list.length
          ? errorMessage(e)
          : `The pipeline cannot run with these inputs${marked ? `: ${fix}.` : ':'}`
      );
      if (list.length) {
        // Where a person looks first: the first field at fault.
        requestAnimationFrame(() => {
          document.querySelector<HTMLElement>(`#${id} [aria-invalid="true"]`)?.focus();
        });
      }
    }
  };

  const pick = async (field: IField, target: IField, index?: number) => {
    const current =
      index === undefined ? values[field.id] : (values[field.id] as FormValue[])[index];
    const start = typeof current === 'string' && current ? PathExt.dirname(current) : '';
    const title = `Pick ${target.kind === 'Directory' ? 'a folder' : 'a file'} for ${field.label}`;
    const options = { manager, title, defaultPath: start };
    let result;
    try {
      result =
        target.kind === 'Directory'
          ? await FileDialog.getExistingDirectory(options)
          : await FileDialog.getOpenFiles(options);
    } catch (e) {
      setError(`The file dialog could not open: ${errorMessage(e)}`);
      return;
    }
    if (!result.button.accept || !result.value || !result.value.length) {
      return;
    }
    const paths = result.value.map(model => model.path);
    if (index === undefined) {
      setValue(field.id, paths[0]);
    } else {
      const list = [...(values[field.id] as FormValue[])];
      list.splice(index, 1, ...paths);
      setValue(field.id, list);
    }
  };

  return (
    <div
      className="dl-modal dl-launch"
      role="dialog"
      aria-modal="true"
      aria-labelledby={`${id}-title`}
      id={id}
      onKeyDown={event => {
        if (event.key === 'Escape') {
          event.stopPropagation();
          props.onClose();
        }
      }}
    >
      <h2 id={`${id}-title`} className="dl-modal-title">
        Launch {pipeline.label || pipeline.id}
      </h2>
      <p className="dl-muted">
        <code>{pipeline.id}</code>
        {pipeline.doc ? ` — ${pipeline.doc}` : ''}
      </p>
      <form
        noValidate
        onSubmit={event => {
          event.preventDefault();
          void submit();
        }}
      >
        {fields.length === 0 && <p>This pipeline takes no inputs.</p>}
        {fields.map(field => (
          <FieldRow
            key={field.id}
            formId={id}
            field={field}
            value={values[field.id]}
            problems={problems[field.id] || []}
            onChange={value => setValue(field.id, value)}
            onPick={(target, index) => void pick(field, target, index)}
          />
        ))}
        {(error || problems['']) && (
          <div className="dl-error" role="alert" data-testid="dl-launch-error">
            {error}
            {(problems[''] || []).map(p => (
              <div key={p}>{p}</div>
            ))}
          </div>
        )}
        <div className="dl-modal-buttons">
          <button type="button" className="jp-mod-styled jp-mod-reject" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy}>
            {busy ? 'Launching…' : 'Launch'}
          </button>
        </div>
      </form>
    </div>
  );
}

interface IFieldRowProps {
  formId: string;
  field: IField;
  value: FormValue;
  problems: string[];
  onChange: (value: FormValue) => void;
  onPick: (target: IField, index?: number) => void;
}

function FieldRow(props: IFieldRowProps): JSX.Element {
  const { field, problems } = props;
  const control = `${props.formId}-${field.id}`;
  const describedBy = [
    field.help ? `${control}-help` : '',
    problems.length ? `${control}-error` : ''
  ]
    .filter(Boolean)
    .join(' ');
  const common = {
    id: control,
    'aria-describedby': describedBy || undefined,
    'aria-invalid': problems.length ? true : undefined,
    'aria-required': field.optional ? undefined : true
  };
  const title = (
    <>
      {field.label} <span className="dl-type">{field.typeLabel}</span>
      {field.optional ? <span className="dl-muted"> (optional)</span> : null}
    </>
  );
  let body: JSX.Element;
  if (field.kind === 'boolean') {
    body = (
      <label className="dl-check" htmlFor={control}>
        <input
          type="checkbox"
          {...common}
          checked={props.value === true}
          onChange={e => props.onChange(e.target.checked)}
        />{' '}
        {title}
      </label>
    );
  } else if (field.kind === 'array') {
    const items = Array.isArray(props.value) ? props.value : [];
    body = (
      <fieldset className="dl-array" aria-describedby={common['aria-describedby']}>
        <legend>{title}</legend>
        {items.map((item, index) => (
          <div className="dl-array-item" key={index}>
            <Control
              field={field.items!}
              id={`${control}-${index}`}
              label={`${field.label} item ${index + 1}`}
              value={item}
              invalid={problems.length > 0}
              onChange={value => {
                const list = [...items];
                list[index] = value;
                props.onChange(list);
              }}
              onPick={() => props.onPick(field.items!, index)}
            />
            <button
              type="button"
              className="dl-button"
              aria-label={`Remove ${field.label} item ${index + 1}`}
              onClick={() => props.onChange(items.filter((_, i) => i !== index))}
            >
              Remove
            </button>
          </div>
        ))}
        <button
          type="button"
          className="dl-button"
          onClick={() => props.onChange([...items, field.items!.initial])}
          aria-invalid={problems.length ? true : undefined}
        >
          Add {field.items!.kind === 'File' ? 'a file' : 'an item'}
        </button>
      </fieldset>
    );
  } else {
    body = (
      <>
        <label htmlFor={control}>{title}</label>
        <Control
          field={field}
          id={control}
          value={props.value}
          invalid={problems.length > 0}
          describedBy={common['aria-describedby']}
          onChange={props.onChange}
          onPick={() => props.onPick(field)}
        />
      </>
    );
  }
  return (
    <div className="dl-field" data-input={field.id} data-kind={field.kind}>
      {body}
      {field.help && (
        <p className="dl-help" id={`${control}-help`}>
          {field.help}
        </p>
      )}
      {problems.length > 0 && (
        <p className="dl-field-error" id={`${control}-error`} data-testid="dl-input-error">
          {problems.join('; ')}
        </p>
      )}
    </div>
  );
}

/** The on-screen keyboard for numbers (the field stays text: a typo is reported, not lost). */
const INPUT_MODES: Partial<Record<string, 'numeric' | 'decimal'>> = {
  int: 'numeric',
  float: 'decimal'
};

interface IControlProps {
  field: IField;
  id: string;
  value: FormValue;
  invalid: boolean;
  /** An accessible name when there is no visible `<label for>` (array items). */
  label?: string;
  describedBy?: string;
  onChange: (value: FormValue) => void;
  onPick: () => void;
}

function Control(props: IControlProps): JSX.Element {
  const { field } = props;
  const aria = {
    id: props.id,
    'aria-label': props.label,
    'aria-invalid': props.invalid ? true : undefined,
    'aria-describedby': props.describedBy
  };
  const text = typeof props.value === 'string' ? props.value : '';
  switch (field.kind) {
    case 'boolean':
      return (
        <input
          type="checkbox"
          {...aria}
          checked={props.value === true}
          onChange={e => props.onChange(e.target.checked)}
        />
      );
    case 'enum':
      return (
        <select
          className="dl-input"
          {...aria}
          value={text}
          onChange={e => props.onChange(e.target.value)}
        >
          {(field.optional || !field.symbols.includes(text)) && <option value="">(not set)</option>}
          {field.symbols.map(s => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      );
    case 'File':
    case 'Directory':
      return (
        <div className="dl-path">
          <input
            type="text"
            className="dl-input"
            {...aria}
            value={text}
            placeholder={field.kind === 'File' ? 'path/to/file' : 'path/to/folder'}
            spellCheck={false}
            onChange={e => props.onChange(e.target.value)}
          />
          <button
            type="button"
            className="dl-button"
            aria-label={`Browse for ${props.label || field.label}`}
            data-testid="dl-browse"
            onClick={props.onPick}
          >
            Browse…
          </button>
        </div>
      );
    default:
      return (
        <input
          type="text"
          className="dl-input"
          {...aria}
          inputMode={INPUT_MODES[field.kind]}
          placeholder={field.kind === 'json' ? 'JSON value' : undefined}
          spellCheck={false}
          value={text}
          onChange={e => props.onChange(e.target.value)}
        />
      );
  }
}
