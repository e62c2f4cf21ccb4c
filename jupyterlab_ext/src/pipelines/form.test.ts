import { describe, expect, it } from 'vitest';

import { fieldsFor, jobInputs, problemsByInput, valuesFrom, workspacePath } from './form';
import { layeredLayout } from './layout';
import { SSEParser } from './sse';
import { IPipelineParameter } from './types';

function input(
  id: string,
  type: IPipelineParameter['type'],
  more: Partial<IPipelineParameter> = {}
): IPipelineParameter {
  return {
    id,
    type,
    type_label: String(more.type_label ?? ''),
    label: null,
    doc: null,
    format: [],
    default: null,
    optional: Array.isArray(type) && type.includes('null'),
    ...more
  };
}

describe('fieldsFor', () => {
  it('gives each CWL type its kind of field', () => {
    const fields = fieldsFor([
      input('s', 'string'),
      input('i', 'int'),
      input('l', 'long'),
      input('f', 'float'),
      input('d', 'double'),
      input('b', 'boolean'),
      input('file', 'File'),
      input('dir', 'Directory'),
      input('e', { type: 'enum', symbols: ['linear', 'log'] }),
      input('a', { type: 'array', items: 'File' }),
      input('r', { type: 'record', fields: [{ name: 'x', type: 'int' }] }),
      input('u', ['int', 'string']),
      input('any', 'Any')
    ]);
    expect(fields.map(f => [f.id, f.kind])).toEqual([
      ['s', 'string'],
      ['i', 'int'],
      ['l', 'int'],
      ['f', 'float'],
      ['d', 'float'],
      ['b', 'boolean'],
      ['file', 'File'],
      ['dir', 'Directory'],
      ['e', 'enum'],
      ['a', 'array'],
      ['r', 'json'],
      ['u', 'json'],
      ['any', 'json']
    ]);
    expect(fields[8].symbols).toEqual(['linear', 'log']);
    expect(fields[8].initial).toBe('linear');
    expect(fields[9].items?.kind).toBe('File');
  });

  it('takes label and doc as the field text, the id when there is no label', () => {
    const [a, b] = fieldsFor([
      input('product', 'File', { label: 'PDS4 label', doc: 'The .xml label', format: ['x'] }),
      input('n', 'int')
    ]);
    expect([a.label, a.help, a.format]).toEqual(['PDS4 label', 'The .xml label', ['x']]);
    expect([b.label, b.help]).toEqual(['n', '']);
  });

  it('marks optional types and defaults optional, unwrapping the null', () => {
    const [opt, def, req, optEnum] = fieldsFor([
      input('opt', ['null', 'float']),
      input('def', 'string', { default: 'time', optional: true }),
      input('req', 'string'),
      input('oe', ['null', { type: 'enum', symbols: ['a', 'b'] }])
    ]);
    expect([opt.kind, opt.optional, opt.nullable, opt.initial]).toEqual(['float', true, true, '']);
    expect([def.optional, def.nullable, def.initial]).toEqual([true, false, 'time']);
    expect(req.optional).toBe(false);
    // An optional enum starts unset rather than on its first symbol.
    expect([optEnum.kind, optEnum.initial]).toEqual(['enum', '']);
  });

  it('pre-fills defaults of every kind', () => {
    const fields = fieldsFor(
      [
        input('i', 'int', { default: 3, optional: true }),
        input('f', 'double', { default: 0.5, optional: true }),
        input('b', 'boolean', { default: true, optional: true }),
        input('e', { type: 'enum', symbols: ['a', 'b'] }, { default: 'b', optional: true }),
        input('file', 'File', {
          default: { class: 'File', location: 'file:///home/u/data/x%20y.csv' },
          optional: true
        }),
        input('a', { type: 'array', items: 'string' }, { default: ['x', 'y'], optional: true }),
        input('r', { type: 'record', fields: [] }, { default: { k: 1 }, optional: true })
      ],
      '/home/u'
    );
    expect(fields.map(f => f.initial)).toEqual([
      '3',
      '0.5',
      true,
      'b',
      'data/x y.csv',
      ['x', 'y'],
      '{"k":1}'
    ]);
  });
});

describe('jobInputs', () => {
  const fields = fieldsFor([
    input('s', 'string'),
    input('i', 'int'),
    input('f', 'float'),
    input('b', 'boolean'),
    input('ob', ['null', 'boolean']),
    input('e', { type: 'enum', symbols: ['a', 'b'] }),
    input('file', 'File'),
    input('dir', 'Directory'),
    input('ints', { type: 'array', items: 'int' }),
    input('files', ['null', { type: 'array', items: 'File' }]),
    input('r', { type: 'record', fields: [{ name: 'x', type: 'int' }] }),
    input('u', ['null', 'int', 'string'])
  ]);

  it('turns form values into typed job inputs, File and Directory as objects', () => {
    const { inputs, problems } = jobInputs(fields, {
      s: 'hello world',
      i: '42',
      f: '-1.5e3',
      b: true,
      ob: false,
      e: 'b',
      file: ' data/psa-rosetta/x.xml ',
      dir: 'data/spice-juice',
      ints: ['1', '', '3'],
      files: ['a.csv', 'b.csv'],
      r: '{"x": 1}',
      u: 'word'
    });
    expect(problems).toEqual([]);
    expect(inputs).toEqual({
      s: 'hello world',
      i: 42,
      f: -1500,
      b: true,
      e: 'b',
      file: { class: 'File', path: 'data/psa-rosetta/x.xml' },
      dir: { class: 'Directory', path: 'data/spice-juice' },
      ints: [1, 3],
      files: [
        { class: 'File', path: 'a.csv' },
        { class: 'File', path: 'b.csv' }
      ],
      r: { x: 1 },
      u: 'word'
    });
  });

  it('leaves empty fields out, so the server uses defaults or names what is missing', () => {
    const { inputs, problems } = jobInputs(fields, { s: '', i: '  ', b: false, files: [] });
    expect(problems).toEqual([]);
    // A required boolean is false; a required array is an empty list.
    expect(inputs).toEqual({ b: false, e: 'a', ints: [] });
  });

  it('names the field whose text is not of its type', () => {
    const { problems } = jobInputs(fields, { i: '4.5', f: 'abc', ints: ['1', 'x'], r: '{' });
    expect(problemsByInput(problems, fields)).toEqual({
      i: ['expected a whole number, got "4.5"'],
      f: ['expected a number, got "abc"'],
      ints: ['item 2: expected a whole number, got "x"'],
      r: ['expected a JSON value (e.g. {"a": 1} or [1, 2])']
    });
  });
});

describe('valuesFrom', () => {
  it("fills the form from a past run's inputs, paths relative to the workspace", () => {
    const fields = fieldsFor([
      input('product', 'File'),
      input('x', 'string', { default: 'time', optional: true }),
      input('n', ['null', 'int']),
      input('flags', { type: 'array', items: 'boolean' })
    ]);
    const values = valuesFrom(
      fields,
      {
        product: { class: 'File', path: '/home/u/data/psa/p.xml', format: 'edam:format_2332' },
        n: 7,
        flags: [true, false]
      },
      '/home/u/'
    );
    expect(values).toEqual({ product: 'data/psa/p.xml', x: 'time', n: '7', flags: [true, false] });
  });

  it('keeps paths outside the workspace as they are', () => {
    expect(workspacePath('/data/psa/p.xml', '/home/u')).toBe('/data/psa/p.xml');
    expect(workspacePath('/home/user2/p', '/home/u')).toBe('/home/user2/p');
    expect(workspacePath('rel/p', '/home/u')).toBe('rel/p');
  });
});

describe('problemsByInput', () => {
  it('puts problems about unknown inputs under the whole form', () => {
    const fields = fieldsFor([input('a', 'string')]);
    expect(
      problemsByInput(
        [
          { input: 'a', message: 'missing (string required)' },
          { input: 'colour', message: 'not an input of this pipeline' }
        ],
        fields
      )
    ).toEqual({ a: ['missing (string required)'], '': ['colour: not an input of this pipeline'] });
  });
});

describe('SSEParser', () => {
  it('parses events split across chunks, skipping keep-alives, keeping the last id', () => {
    const parser = new SSEParser();
    expect(parser.feed('event: step\ndata: {"kind":"step","st')).toEqual([]);
    const got = parser.feed(
      'ate":"running"}\n\n: keep-alive\n\nid: 120\n\nevent: end\r\ndata: {}\r\n\r\n'
    );
    expect(got).toEqual([
      { event: 'step', data: '{"kind":"step","state":"running"}', id: undefined },
      { event: 'end', data: '{}', id: '120' }
    ]);
    expect(parser.lastId).toBe('120');
  });
});

describe('layeredLayout', () => {
  it('puts a step one layer after the latest step it depends on', () => {
    const at = layeredLayout(
      ['fetch', 'a', 'b', 'join'],
      [
        { from: 'fetch', to: 'a' },
        { from: 'fetch', to: 'b' },
        { from: 'a', to: 'join' },
        { from: 'b', to: 'join' }
      ]
    );
    expect(at).toEqual({
      fetch: { x: 0, y: 0 },
      a: { x: 190, y: 0 },
      b: { x: 190, y: 70 },
      join: { x: 380, y: 0 }
    });
  });

  it('without links, lays the steps out in their declared order', () => {
    expect(layeredLayout(['extract', 'draw'])).toEqual({
      extract: { x: 0, y: 0 },
      draw: { x: 190, y: 0 }
    });
  });
});
