/**
 * The properties of the selected node: a step's inputs (source, default, valueFrom, scatter),
 * its `when`; a workflow input's type, label and default; a workflow output's source.
 * Text fields apply their value when they lose focus or on Enter, so one edit is one undo step.
 */
import * as React from 'react';

import { IGraph, INode } from './types';

type Change = (node: INode) => void;

interface IProps {
  graph: IGraph;
  node: INode | null;
  onChange: (change: Change, replace?: boolean) => void;
  onAddInput: (port: string) => void;
  onAddOutput: (port: string) => void;
}

/** A default typed as text: JSON when it parses (`2`, `true`, `{"class": "File", ...}`). */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function showValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function Field(props: {
  label: string;
  value: string;
  onCommit: (value: string) => void;
  placeholder?: string;
  testid?: string;
}): JSX.Element {
  const [text, setText] = React.useState(props.value);
  React.useEffect(() => setText(props.value), [props.value]);
  const commit = () => {
    if (text !== props.value) {
      props.onCommit(text);
    }
  };
  return (
    <label className="dl-editor-field">
      <span>{props.label}</span>
      <input
        className="jp-mod-styled"
        value={text}
        placeholder={props.placeholder}
        data-testid={props.testid}
        onChange={e => setText(e.target.value)}
        onBlur={commit}
        onKeyDown={e => {
          if (e.key === 'Enter') {
            commit();
          }
        }}
      />
    </label>
  );
}

function sourcesOf(graph: IGraph, node: string, port: string): string[] {
  return graph.edges
    .filter(e => e.target === node && e.target_port === port)
    .map(e => (e.source === e.source_port ? e.source : `${e.source}/${e.source_port}`));
}

function StepProperties(props: IProps & { node: INode }): JSX.Element {
  const { graph, node, onChange } = props;
  const scatter = node.scatter ?? [];
  return (
    <>
      <h3 className="dl-editor-props-title">Step {node.id}</h3>
      <div className="dl-editor-props-run">
        runs {typeof node.run === 'string' ? node.run : (node.run_class ?? 'an inline process')}
      </div>
      <Field
        label="Label"
        value={node.label ?? ''}
        onCommit={v => onChange(n => (n.label = v || null))}
      />
      <h4>Inputs</h4>
      {node.inputs.map(p => {
        const sources = sourcesOf(graph, node.id, p.id);
        return (
          <fieldset key={p.id} className="dl-editor-props-port" data-port={p.id}>
            <legend>
              {p.id} <span className="dl-editor-port-type">{p.type_label}</span>
            </legend>
            <div className="dl-editor-props-source">
              {sources.length ? `from ${sources.join(', ')}` : p.optional ? 'optional' : 'not connected'}
            </div>
            <Field
              label="Default"
              testid={`default-${p.id}`}
              value={p.has_default ? showValue(p.default) : ''}
              placeholder="a value, e.g. 10 or text"
              onCommit={v =>
                onChange(n => {
                  const q = n.inputs.find(x => x.id === p.id)!;
                  q.has_default = v !== '';
                  q.default = v === '' ? null : parseValue(v);
                  q.declared = true;
                })
              }
            />
            <Field
              label="valueFrom"
              value={p.value_from ?? ''}
              placeholder="$(self) expression"
              onCommit={v =>
                onChange(n => {
                  const q = n.inputs.find(x => x.id === p.id)!;
                  q.value_from = v || null;
                  q.declared = true;
                })
              }
            />
            <label className="dl-editor-check">
              <input
                type="checkbox"
                checked={scatter.includes(p.id)}
                onChange={e =>
                  onChange(n => {
                    const s = new Set(n.scatter ?? []);
                    if (e.target.checked) {
                      s.add(p.id);
                    } else {
                      s.delete(p.id);
                    }
                    n.scatter = n.inputs.map(x => x.id).filter(x => s.has(x));
                    if (n.scatter.length < 2) {
                      n.scatter_method = null;
                    } else if (!n.scatter_method) {
                      n.scatter_method = 'dotproduct';
                    }
                    n.inputs.find(x => x.id === p.id)!.declared = true;
                  })
                }
              />
              scatter over it
            </label>
            {!sources.length && (
              <button className="jp-mod-styled dl-editor-small" onClick={() => props.onAddInput(p.id)}>
                Make it a workflow input
              </button>
            )}
          </fieldset>
        );
      })}
      {scatter.length > 1 && (
        <label className="dl-editor-field">
          <span>Scatter method</span>
          <select
            className="jp-mod-styled"
            value={node.scatter_method ?? 'dotproduct'}
            onChange={e => onChange(n => (n.scatter_method = e.target.value))}
          >
            <option value="dotproduct">dotproduct</option>
            <option value="nested_crossproduct">nested_crossproduct</option>
            <option value="flat_crossproduct">flat_crossproduct</option>
          </select>
        </label>
      )}
      <Field
        label="Run when"
        value={node.when ?? ''}
        placeholder="$(inputs.flag) (empty: always)"
        onCommit={v => onChange(n => (n.when = v || null))}
      />
      <h4>Outputs</h4>
      {node.outputs.map(p => (
        <div key={p.id} className="dl-editor-props-out">
          <span>
            {p.id} <span className="dl-editor-port-type">{p.type_label}</span>
          </span>
          <button className="jp-mod-styled dl-editor-small" onClick={() => props.onAddOutput(p.id)}>
            Make it a workflow output
          </button>
        </div>
      ))}
    </>
  );
}

function ParamProperties(props: IProps & { node: INode }): JSX.Element {
  const { graph, node, onChange } = props;
  const isInput = node.kind === 'input';
  const port = isInput ? node.outputs[0] : node.inputs[0];
  return (
    <>
      <h3 className="dl-editor-props-title">
        Workflow {node.kind} {node.id}
      </h3>
      <Field
        label="Type"
        value={typeof port?.type === 'string' ? port.type : (port?.type_label ?? '')}
        placeholder="File, int, string[], File?"
        onCommit={v =>
          onChange(n => {
            const q = isInput ? n.outputs[0] : n.inputs[0];
            q.type = v;
            q.type_label = v;
          })
        }
      />
      <Field
        label="Label"
        value={node.label ?? ''}
        onCommit={v => onChange(n => (n.label = v || null))}
      />
      {isInput ? (
        <Field
          label="Default"
          value={showValue(node.extras.default)}
          onCommit={v =>
            onChange(n => {
              if (v === '') {
                delete n.extras.default;
              } else {
                n.extras.default = parseValue(v);
              }
            })
          }
        />
      ) : (
        <div className="dl-editor-props-source">
          {sourcesOf(graph, node.id, node.id).length
            ? `from ${sourcesOf(graph, node.id, node.id).join(', ')}`
            : 'not connected: link a step output to it'}
        </div>
      )}
    </>
  );
}

export function PropertiesPanel(props: IProps): JSX.Element {
  const { node } = props;
  return (
    <div className="dl-editor-props" role="region" aria-label="Properties">
      <div className="dl-editor-section-title">Properties</div>
      {!node ? (
        <p className="dl-editor-hint">
          Select a step, input or output to edit it. Drag tools from the palette onto the canvas;
          drag from an output handle (right) to an input handle (left) to link them.
        </p>
      ) : node.kind === 'step' ? (
        <StepProperties {...props} node={node} />
      ) : (
        <ParamProperties {...props} node={node} />
      )}
    </div>
  );
}
