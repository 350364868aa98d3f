/**
 * Parameter forms from a template's JSON Schema: field specs, and parsing plus validation of
 * what the user typed (the server validates again; this names the field before a round trip).
 */
import type { JSONSchema } from './types';

export type FieldKind = 'string' | 'number' | 'integer' | 'boolean' | 'enum';

export interface FieldSpec {
  name: string;
  label: string;
  description: string;
  kind: FieldKind;
  required: boolean;
  default: unknown;
  /** Enum choices (any JSON scalars), in schema order. */
  options: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

/** What the user entered: text for inputs/selects (the option index for enums), a flag for booleans. */
export type RawValue = string | boolean;

export interface FieldError {
  field: string;
  message: string;
}

export interface FormResult {
  values: Record<string, unknown>;
  errors: FieldError[];
}

/** A schema the form cannot represent. */
export class SchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaError';
  }
}

const SCALARS = ['string', 'number', 'integer', 'boolean'];

function fieldType(name: string, prop: JSONSchema): { type: string; nullable: boolean } {
  if (prop.enum !== undefined) {
    return { type: 'enum', nullable: prop.enum.includes(null) };
  }
  const types = Array.isArray(prop.type) ? prop.type : prop.type ? [prop.type] : [];
  const nullable = types.includes('null');
  const real = types.filter(t => t !== 'null');
  if (real.length === 0) {
    if (prop.default !== undefined && prop.default !== null) {
      const t = typeof prop.default;
      if (t === 'boolean' || t === 'string') {
        return { type: t, nullable };
      }
      if (t === 'number') {
        return { type: Number.isInteger(prop.default) ? 'integer' : 'number', nullable };
      }
    }
    return { type: 'string', nullable };
  }
  if (real.length > 1 || !SCALARS.includes(real[0])) {
    throw new SchemaError(
      `Parameter "${name}" has type ${JSON.stringify(prop.type)}, which the form cannot show ` +
        '(it takes string, number, integer, boolean or an enum).'
    );
  }
  return { type: real[0], nullable };
}

/** The numeric bound of a draft-4 boolean or draft-6+ numeric exclusive limit. */
function exclusive(value: number | boolean | undefined, bound: number | undefined) {
  if (typeof value === 'number') {
    return value;
  }
  return value === true ? bound : undefined;
}

/** The form's fields, in the schema's property order. */
export function fieldsFromSchema(schema: JSONSchema | undefined): FieldSpec[] {
  if (!schema) {
    return [];
  }
  if (schema.type !== undefined && schema.type !== 'object') {
    throw new SchemaError(`The parameter schema must describe an object, not ${schema.type}.`);
  }
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, prop]) => {
    const { type, nullable } = fieldType(name, prop);
    const spec: FieldSpec = {
      name,
      label: prop.title || name,
      description: prop.description ?? '',
      kind: type as FieldKind,
      required: required.has(name) && !nullable && type !== 'boolean',
      default: prop.default,
      options: prop.enum ? [...prop.enum] : []
    };
    const exMin = exclusive(prop.exclusiveMinimum, prop.minimum);
    const exMax = exclusive(prop.exclusiveMaximum, prop.maximum);
    if (exMin !== undefined) {
      spec.exclusiveMinimum = exMin;
    } else if (prop.minimum !== undefined) {
      spec.minimum = prop.minimum;
    }
    if (exMax !== undefined) {
      spec.exclusiveMaximum = exMax;
    } else if (prop.maximum !== undefined) {
      spec.maximum = prop.maximum;
    }
    if (prop.minLength !== undefined) {
      spec.minLength = prop.minLength;
    }
    if (prop.maxLength !== undefined) {
      spec.maxLength = prop.maxLength;
    }
    if (prop.pattern !== undefined) {
      spec.pattern = prop.pattern;
    }
    return spec;
  });
}

/** Human text for a field's bounds (`"0 ≤ value ≤ 10"`, `"length ≤ 20"`), or `""`. */
export function boundsText(field: FieldSpec): string {
  const parts: string[] = [];
  const lower =
    field.exclusiveMinimum !== undefined
      ? `${field.exclusiveMinimum} <`
      : field.minimum !== undefined
        ? `${field.minimum} ≤`
        : '';
  const upper =
    field.exclusiveMaximum !== undefined
      ? `< ${field.exclusiveMaximum}`
      : field.maximum !== undefined
        ? `≤ ${field.maximum}`
        : '';
  if (lower || upper) {
    parts.push([lower, 'value', upper].filter(Boolean).join(' '));
  }
  if (field.minLength !== undefined || field.maxLength !== undefined) {
    const lo = field.minLength !== undefined ? `${field.minLength} ≤ ` : '';
    const hi = field.maxLength !== undefined ? ` ≤ ${field.maxLength}` : '';
    parts.push(`${lo}length${hi}`);
  }
  if (field.pattern !== undefined) {
    parts.push(`matches /${field.pattern}/`);
  }
  return parts.join(', ');
}

/** The text shown for an enum option. */
export function optionLabel(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The form's starting value for a field (its default, as the user would type it). */
export function initialRaw(field: FieldSpec): RawValue {
  if (field.kind === 'boolean') {
    return field.default === true;
  }
  if (field.kind === 'enum') {
    const index = field.options.findIndex(o => o === field.default);
    return String(index >= 0 ? index : field.required ? 0 : -1);
  }
  return field.default === undefined || field.default === null ? '' : String(field.default);
}

function checkBounds(field: FieldSpec, value: number): string | null {
  const named = `"${field.label}"`;
  if (field.minimum !== undefined && value < field.minimum) {
    return `${named} must be at least ${field.minimum} (got ${value}).`;
  }
  if (field.exclusiveMinimum !== undefined && value <= field.exclusiveMinimum) {
    return `${named} must be greater than ${field.exclusiveMinimum} (got ${value}).`;
  }
  if (field.maximum !== undefined && value > field.maximum) {
    return `${named} must be at most ${field.maximum} (got ${value}).`;
  }
  if (field.exclusiveMaximum !== undefined && value >= field.exclusiveMaximum) {
    return `${named} must be less than ${field.exclusiveMaximum} (got ${value}).`;
  }
  return null;
}

/** Parse one field. `undefined` value means "leave it out" (an empty optional field). */
export function parseField(
  field: FieldSpec,
  raw: RawValue | undefined
): { value?: unknown; error?: string } {
  const named = `"${field.label}"`;
  if (field.kind === 'boolean') {
    return { value: raw === true || raw === 'true' };
  }
  const text = typeof raw === 'string' ? raw.trim() : raw === undefined ? '' : String(raw);
  if (field.kind === 'enum') {
    const index = text === '' ? -1 : Number(text);
    if (index === -1) {
      return field.required ? { error: `${named} is required: pick one.` } : {};
    }
    if (!Number.isInteger(index) || index < 0 || index >= field.options.length) {
      const choices = field.options.map(optionLabel).join(', ');
      return { error: `${named} must be one of: ${choices}.` };
    }
    return { value: field.options[index] };
  }
  if (text === '') {
    return field.required ? { error: `${named} is required.` } : {};
  }
  if (field.kind === 'integer') {
    if (!/^[-+]?\d+$/.test(text)) {
      return { error: `${named} must be a whole number (got "${text}").` };
    }
    const value = Number(text);
    const bad = checkBounds(field, value);
    return bad ? { error: bad } : { value };
  }
  if (field.kind === 'number') {
    const value = Number(text);
    if (!Number.isFinite(value) || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
      return { error: `${named} must be a number (got "${text}").` };
    }
    const bad = checkBounds(field, value);
    return bad ? { error: bad } : { value };
  }
  const value = typeof raw === 'string' ? raw : text;
  if (field.minLength !== undefined && value.length < field.minLength) {
    return { error: `${named} must be at least ${field.minLength} characters long.` };
  }
  if (field.maxLength !== undefined && value.length > field.maxLength) {
    return { error: `${named} must be at most ${field.maxLength} characters long.` };
  }
  if (field.pattern !== undefined) {
    let re: RegExp | null = null;
    try {
      re = new RegExp(field.pattern, 'u');
    } catch {
      re = null; // a pattern JavaScript cannot read: leave it to the server
    }
    if (re && !re.test(value)) {
      return { error: `${named} must match the pattern /${field.pattern}/.` };
    }
  }
  return { value };
}

/** Parse and validate the whole form; `errors` names every bad field. */
export function validateForm(fields: FieldSpec[], raw: Record<string, RawValue>): FormResult {
  const values: Record<string, unknown> = {};
  const errors: FieldError[] = [];
  for (const field of fields) {
    const { value, error } = parseField(field, raw[field.name]);
    if (error) {
      errors.push({ field: field.name, message: error });
    } else if (value !== undefined) {
      values[field.name] = value;
    }
  }
  return { values, errors };
}
