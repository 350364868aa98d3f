import { describe, expect, it } from 'vitest';

import {
  boundsText,
  fieldsFromSchema,
  initialRaw,
  optionLabel,
  parseField,
  SchemaError,
  validateForm
} from '../src/schemaform';
import type { JSONSchema } from '../src/types';

const schema: JSONSchema = {
  type: 'object',
  required: ['band', 'radius', 'nmax', 'label'],
  properties: {
    band: { type: 'string', enum: ['g', 'r', 'i'], default: 'r', title: 'Filter band' },
    radius: { type: 'number', minimum: 0, exclusiveMaximum: 5, default: 0.1, description: 'deg' },
    nmax: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    label: { type: 'string', minLength: 2, maxLength: 8, pattern: '^[a-z]+$', default: 'run' },
    verbose: { type: 'boolean', default: true },
    note: { type: ['string', 'null'] },
    level: { enum: [1, 2, 3] }
  }
};

describe('fieldsFromSchema', () => {
  const fields = fieldsFromSchema(schema);
  const byName = Object.fromEntries(fields.map(f => [f.name, f]));

  it('keeps property order and reads kinds, labels, defaults', () => {
    expect(fields.map(f => f.name)).toEqual([
      'band',
      'radius',
      'nmax',
      'label',
      'verbose',
      'note',
      'level'
    ]);
    expect(byName.band).toMatchObject({ kind: 'enum', label: 'Filter band', options: ['g', 'r', 'i'] });
    expect(byName.radius).toMatchObject({ kind: 'number', minimum: 0, exclusiveMaximum: 5 });
    expect(byName.nmax).toMatchObject({ kind: 'integer', minimum: 1, maximum: 1000 });
    expect(byName.verbose).toMatchObject({ kind: 'boolean', required: false, default: true });
    expect(byName.note).toMatchObject({ kind: 'string', required: false });
    expect(byName.level).toMatchObject({ kind: 'enum', options: [1, 2, 3], required: false });
  });

  it('reads draft-4 boolean exclusive bounds', () => {
    const [f] = fieldsFromSchema({
      properties: { x: { type: 'number', minimum: 0, exclusiveMinimum: true } }
    });
    expect(f.exclusiveMinimum).toBe(0);
    expect(f.minimum).toBeUndefined();
  });

  it('guesses the kind from the default when no type is given', () => {
    const fs = fieldsFromSchema({ properties: { a: { default: 3 }, b: { default: 0.5 }, c: { default: false } } });
    expect(fs.map(f => f.kind)).toEqual(['integer', 'number', 'boolean']);
  });

  it('refuses what the form cannot show, naming the parameter', () => {
    expect(() => fieldsFromSchema({ properties: { pts: { type: 'array' } } })).toThrow(SchemaError);
    expect(() => fieldsFromSchema({ properties: { pts: { type: 'array' } } })).toThrow(/"pts"/);
    expect(() => fieldsFromSchema({ type: 'array' })).toThrow(/object/);
    expect(fieldsFromSchema(undefined)).toEqual([]);
  });

  it('shows bounds', () => {
    expect(boundsText(byName.radius)).toBe('0 ≤ value < 5');
    expect(boundsText(byName.nmax)).toBe('1 ≤ value ≤ 1000');
    expect(boundsText(byName.label)).toBe('2 ≤ length ≤ 8, matches /^[a-z]+$/');
    expect(boundsText(byName.verbose)).toBe('');
  });

  it('starts from the defaults', () => {
    expect(initialRaw(byName.band)).toBe('1');
    expect(initialRaw(byName.radius)).toBe('0.1');
    expect(initialRaw(byName.verbose)).toBe(true);
    expect(initialRaw(byName.note)).toBe('');
    expect(initialRaw(byName.level)).toBe('-1');
    expect(optionLabel(2)).toBe('2');
  });

  it('gives back the defaults unchanged', () => {
    const raw = Object.fromEntries(fields.map(f => [f.name, initialRaw(f)]));
    expect(validateForm(fields, raw)).toEqual({
      values: { band: 'r', radius: 0.1, nmax: 100, label: 'run', verbose: true },
      errors: []
    });
  });
});

describe('validation', () => {
  const fields = fieldsFromSchema(schema);
  const get = (name: string) => fields.find(f => f.name === name)!;

  it('checks types and names the field', () => {
    expect(parseField(get('nmax'), '1.5').error).toBe('"nmax" must be a whole number (got "1.5").');
    expect(parseField(get('radius'), 'abc').error).toBe('"radius" must be a number (got "abc").');
    expect(parseField(get('radius'), '1e-2').value).toBe(0.01);
    expect(parseField(get('radius'), ' .5 ').value).toBe(0.5);
    expect(parseField(get('radius'), 'Infinity').error).toMatch(/must be a number/);
  });

  it('checks bounds', () => {
    expect(parseField(get('nmax'), '0').error).toBe('"nmax" must be at least 1 (got 0).');
    expect(parseField(get('nmax'), '1001').error).toBe('"nmax" must be at most 1000 (got 1001).');
    expect(parseField(get('radius'), '5').error).toBe('"radius" must be less than 5 (got 5).');
    expect(parseField(get('radius'), '-0.1').error).toMatch(/at least 0/);
    const [f] = fieldsFromSchema({ properties: { x: { type: 'integer', exclusiveMinimum: 0 } } });
    expect(parseField(f, '0').error).toBe('"x" must be greater than 0 (got 0).');
  });

  it('checks enums, strings and required fields', () => {
    expect(parseField(get('band'), '7').error).toBe('"Filter band" must be one of: g, r, i.');
    expect(parseField(get('band'), '-1').error).toMatch(/required/);
    expect(parseField(get('level'), '-1')).toEqual({});
    expect(parseField(get('level'), '2').value).toBe(3);
    expect(parseField(get('label'), 'a').error).toMatch(/at least 2 characters/);
    expect(parseField(get('label'), 'abcdefghij').error).toMatch(/at most 8 characters/);
    expect(parseField(get('label'), 'Ab').error).toMatch(/pattern/);
    expect(parseField(get('label'), '').error).toBe('"label" is required.');
    expect(parseField(get('note'), '')).toEqual({});
    expect(parseField(get('verbose'), false).value).toBe(false);
  });

  it('collects every error of the form', () => {
    const result = validateForm(fields, { band: '0', radius: 'x', nmax: '5000', label: 'ok', verbose: false });
    expect(result.errors.map(e => e.field)).toEqual(['radius', 'nmax']);
    expect(result.values).toEqual({ band: 'g', label: 'ok', verbose: false });
  });

  it('leaves patterns JavaScript cannot read to the server', () => {
    const [f] = fieldsFromSchema({ properties: { s: { type: 'string', pattern: '(?<' } } });
    expect(parseField(f, 'anything').value).toBe('anything');
  });
});
