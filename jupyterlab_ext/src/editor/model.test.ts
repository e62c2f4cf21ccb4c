import { describe, expect, it } from 'vitest';

import {
  History,
  addInputFor,
  addOutputFrom,
  autoLayout,
  connect,
  disconnect,
  freshId,
  newPort,
  removeNodes
} from './model';
import { parseValue, showValue } from './properties';
import { IGraph, INode, IPort } from './types';

function port(id: string, type: unknown, declared = true): IPort {
  return { ...newPort(id, type, String(type)), declared };
}

function step(id: string, inputs: IPort[], outputs: IPort[]): INode {
  return { id, kind: 'step', label: null, position: [0, 0], inputs, outputs, extras: {}, scatter: [] };
}

function graph(): IGraph {
  return {
    id: null,
    path: null,
    extras: {},
    envelope: null,
    packed: null,
    main_index: 0,
    nodes: [
      { id: 'src', kind: 'input', label: null, position: null, inputs: [], outputs: [port('src', 'File')], extras: {} },
      step('a', [port('text', 'File', false)], [port('out', 'stdout')]),
      step('b', [port('file', 'File', false)], [port('first', 'File')])
    ],
    edges: []
  };
}

describe('graph edits', () => {
  it('connects, declaring the target port, and disconnects', () => {
    const g0 = graph();
    const g1 = connect(g0, { source: 'src', source_port: 'src', target: 'a', target_port: 'text' });
    expect(g1.edges).toHaveLength(1);
    expect(g1.nodes[1].inputs[0].declared).toBe(true);
    expect(g0.edges).toHaveLength(0); // the old graph is untouched
    expect(disconnect(g1, [g1.edges[0]]).edges).toHaveLength(0);
  });

  it('removes a node with its links', () => {
    let g = connect(graph(), { source: 'a', source_port: 'out', target: 'b', target_port: 'file' });
    g = removeNodes(g, ['a']);
    expect(g.nodes.map(n => n.id)).toEqual(['src', 'b']);
    expect(g.edges).toEqual([]);
  });

  it('makes workflow inputs and outputs from step ports', () => {
    let g = addInputFor(graph(), 'b', 'file');
    expect(g.nodes.map(n => n.id)).toEqual(['src', 'file', 'a', 'b']);
    expect(g.edges).toEqual([{ source: 'file', source_port: 'file', target: 'b', target_port: 'file' }]);
    g = addOutputFrom(g, 'a', 'out');
    const out = g.nodes.find(n => n.kind === 'output')!;
    // A tool's stdout is a File to the workflow.
    expect(out.inputs[0].type).toBe('File');
    expect(freshId(g, 'file')).toBe('file_2');
  });

  it('lays nodes out in dependency columns', () => {
    let g = connect(graph(), { source: 'src', source_port: 'src', target: 'a', target_port: 'text' });
    g = connect(g, { source: 'a', source_port: 'out', target: 'b', target_port: 'file' });
    const xs = autoLayout(g).nodes.map(n => n.position![0]);
    expect(xs[0]).toBeLessThan(xs[1]);
    expect(xs[1]).toBeLessThan(xs[2]);
  });

  it('undoes and redoes whole graphs', () => {
    const h = new History();
    const g0 = graph();
    const g1 = removeNodes(g0, ['a']);
    h.push(g0);
    expect(h.undo(g1)).toBe(g0);
    expect(h.redo(g0)).toBe(g1);
    expect(h.canRedo).toBe(false);
  });

  it('reads defaults as JSON when they parse', () => {
    expect(parseValue('2')).toBe(2);
    expect(parseValue('hello')).toBe('hello');
    expect(parseValue('{"class": "File", "path": "a.txt"}')).toEqual({ class: 'File', path: 'a.txt' });
    expect(showValue({ a: 1 })).toBe('{"a":1}');
  });
});
