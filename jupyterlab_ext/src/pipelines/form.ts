/**
 * The launch form, without any UI: a pipeline's CWL inputs become field descriptors, and what the
 * user typed becomes the job's inputs for `POST runs`. Kept pure so that every CWL type is unit
 * tested (`form.test.ts`); `launch.tsx` only renders these descriptors.
 */
import { CWLType, IInputProblem, IPipelineParameter } from './types';

/** How a value is entered. `json` is the fallback for records and unions of several types. */
export type FieldKind =
  | 'string'
  | 'int'
  | 'float'
  | 'boolean'
  | 'enum'
  | 'File'
  | 'Directory'
  | 'array'
  | 'json';

/** A value as the form holds it: text in inputs, a checkbox state, or a list of item values. */
export type FormValue = string | boolean | FormValue[];

export interface IField {
  id: string;
  label: string;
  /** The input's doc, shown as help text. */
  help: string;
  /** Short type as the server labels it (`File`, `int?`, `string[]`). */
  typeLabel: string;
  kind: FieldKind;
  /** The job may leave it out (a `null` in its type union, or a default). */
  optional: boolean;
  /** `null` is one of its types: an empty field is sent as nothing. */
  nullable: boolean;
  /** Symbols of an enum (also of an enum array's items). */
  symbols: string[];
  /** For arrays: how one item is entered. */
  items?: IField;
  /** CWL formats a File input declares. */
  format: string[];
  /** The starting value (the input's default, or empty). */
  initial: FormValue;
  /** For `json` fields: a string is one of the types, so text that is not JSON is a string. */
  takesText: boolean;
}

const INT_TYPES = ['int', 'long'];
const FLOAT_TYPES = ['float', 'double'];

/** Drop `null` from a union; `nullable` says whether it was there. */
function splitNull(type: CWLType): { type: CWLType | null; nullable: boolean; union: boolean } {
  if (Array.isArray(type)) {
    const rest = type.filter(t => t !== 'null');
    const nullable = rest.length < type.length;
    if (rest.length === 1) {
      return { type: rest[0], nullable, union: false };
    }
    return { type: rest.length ? rest : null, nullable, union: rest.length > 1 };
  }
  return { type, nullable: false, union: false };
}

function kindOf(type: CWLType | null, union: boolean): FieldKind {
  if (type === null || union) {
    return 'json';
  }
  if (typeof type === 'string') {
    if (type === 'string') {
      return 'string';
    }
    if (INT_TYPES.includes(type)) {
      return 'int';
    }
    if (FLOAT_TYPES.includes(type)) {
      return 'float';
    }
    if (type === 'boolean' || type === 'File' || type === 'Directory') {
      return type;
    }
    return 'json';
  }
  if (Array.isArray(type)) {
    return 'json';
  }
  if (type.type === 'enum') {
    return 'enum';
  }
  if (type.type === 'array') {
    return 'array';
  }
  return 'json';
}

/** The path a File/Directory value points at (`path`, else `location` without `file://`). */
export function pathOf(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    if (typeof obj.path === 'string') {
      return obj.path;
    }
    if (typeof obj.location === 'string') {
      return obj.location.startsWith('file://')
        ? decodeURIComponent(obj.location.slice('file://'.length))
        : obj.location;
    }
  }
  return '';
}

/**
 * A path as the user picks it: relative to the workspace root `root` when inside it (the server
 * takes relative paths from there), else as it is.
 */
export function workspacePath(path: string, root = ''): string {
  if (root && path.startsWith('/')) {
    const base = root.endsWith('/') ? root : root + '/';
    if (path === root) {
      return '';
    }
    if (path.startsWith(base)) {
      return path.slice(base.length);
    }
  }
  return path;
}

/** A job value (a default, or a past run's input) as the form shows it for `field`. */
export function toFormValue(field: IField, value: unknown, root = ''): FormValue {
  if (value === null || value === undefined) {
    return emptyValue(field);
  }
  switch (field.kind) {
    case 'boolean':
      return value === true;
    case 'File':
    case 'Directory':
      return workspacePath(pathOf(value), root);
    case 'array':
      return Array.isArray(value) ? value.map(v => toFormValue(field.items!, v, root)) : [];
    case 'json':
      return typeof value === 'string' && field.takesText
        ? value
        : JSON.stringify(value);
    default:
      return String(value);
  }
}

function emptyValue(field: IField): FormValue {
  if (field.kind === 'boolean') {
    return false;
  }
  if (field.kind === 'array') {
    return [];
  }
  if (field.kind === 'enum' && !field.optional && field.symbols.length) {
    return field.symbols[0];
  }
  return '';
}

function fieldOf(
  id: string,
  type: CWLType,
  extra: { label?: string | null; doc?: string | null; typeLabel?: string; format?: string[] }
): IField {
  const { type: inner, nullable, union } = splitNull(type);
  const kind = kindOf(inner, union);
  const field: IField = {
    id,
    label: extra.label || id,
    help: extra.doc || '',
    typeLabel: extra.typeLabel || '',
    kind,
    optional: nullable,
    nullable,
    symbols: [],
    format: extra.format || [],
    initial: '',
    takesText: type === 'Any' || (Array.isArray(type) && type.includes('string'))
  };
  if (kind === 'enum' && inner && typeof inner === 'object' && !Array.isArray(inner)) {
    field.symbols = (inner as { symbols: string[] }).symbols;
  }
  if (kind === 'array' && inner && typeof inner === 'object' && !Array.isArray(inner)) {
    const items = (inner as { items: CWLType }).items;
    field.items = fieldOf(`${id}[]`, items, { format: extra.format });
    field.symbols = field.items.symbols;
  }
  field.initial = emptyValue(field);
  return field;
}

/** One field per CWL input, in the pipeline's order, defaults filled in. */
export function fieldsFor(inputs: IPipelineParameter[], root = ''): IField[] {
  return inputs.map(input => {
    const field = fieldOf(input.id, input.type, {
      label: input.label,
      doc: input.doc,
      typeLabel: input.type_label,
      format: input.format
    });
    field.optional = input.optional || field.nullable;
    field.initial =
      input.default === null || input.default === undefined
        ? emptyValue(field)
        : toFormValue(field, input.default, root);
    return field;
  });
}

/** Form values filled from a past run's inputs (for "re-run with changed inputs"). */
export function valuesFrom(
  fields: IField[],
  job: Record<string, unknown> = {},
  root = ''
): Record<string, FormValue> {
  const values: Record<string, FormValue> = {};
  for (const field of fields) {
    values[field.id] = field.id in job ? toFormValue(field, job[field.id], root) : field.initial;
  }
  return values;
}

/** Raised by `toJobValue` for text that cannot be the field's type. */
class BadValue extends Error {}

function isEmpty(value: FormValue): boolean {
  return (
    (typeof value === 'string' && value.trim() === '') || (Array.isArray(value) && !value.length)
  );
}

function toJobValue(field: IField, value: FormValue): unknown {
  const text = typeof value === 'string' ? value.trim() : '';
  switch (field.kind) {
    case 'string':
      return typeof value === 'string' ? value : String(value);
    case 'int': {
      if (!/^[+-]?\d+$/.test(text)) {
        throw new BadValue(`expected a whole number, got "${text}"`);
      }
      return Number(text);
    }
    case 'float': {
      const number = Number(text);
      if (text === '' || !Number.isFinite(number)) {
        throw new BadValue(`expected a number, got "${text}"`);
      }
      return number;
    }
    case 'boolean':
      return value === true;
    case 'enum':
      return text;
    case 'File':
    case 'Directory':
      return { class: field.kind, path: text };
    case 'array': {
      const items = (Array.isArray(value) ? value : []).filter(v => !isEmpty(v));
      return items.map((item, i) => {
        try {
          return toJobValue(field.items!, item);
        } catch (error) {
          throw new BadValue(`item ${i + 1}: ${(error as Error).message}`);
        }
      });
    }
    case 'json':
      try {
        return JSON.parse(text);
      } catch {
        // A bare word for a union that allows strings is meant as that string.
        if (field.takesText) {
          return value;
        }
        throw new BadValue('expected a JSON value (e.g. {"a": 1} or [1, 2])');
      }
  }
}

/**
 * The job's inputs from the form's values, and the problems found before asking the server.
 *
 * Empty fields are left out: the server then uses the default, or says the input is missing (its
 * message is shown beside the field like any other problem). An unticked optional boolean without
 * a default is left out too, so the tool sees no flag rather than `false`.
 */
export function jobInputs(
  fields: IField[],
  values: Record<string, FormValue>
): { inputs: Record<string, unknown>; problems: IInputProblem[] } {
  const inputs: Record<string, unknown> = {};
  const problems: IInputProblem[] = [];
  for (const field of fields) {
    const value = values[field.id] ?? field.initial;
    if (field.kind === 'boolean') {
      if (value === true || !field.nullable || field.initial === true) {
        inputs[field.id] = value === true;
      }
      continue;
    }
    if (isEmpty(value) && field.kind !== 'array') {
      continue;
    }
    if (field.kind === 'array' && isEmpty(value) && field.optional) {
      continue;
    }
    try {
      inputs[field.id] = toJobValue(field, value);
    } catch (error) {
      problems.push({ input: field.id, message: (error as Error).message });
    }
  }
  return { inputs, problems };
}

/** Problems grouped by input name; problems about the whole job go under `''`. */
export function problemsByInput(
  problems: IInputProblem[],
  fields: IField[]
): Record<string, string[]> {
  const known = new Set(fields.map(f => f.id));
  const out: Record<string, string[]> = {};
  for (const problem of problems) {
    const key = known.has(problem.input) ? problem.input : '';
    (out[key] = out[key] || []).push(
      key ? problem.message : `${problem.input}: ${problem.message}`
    );
  }
  return out;
}
