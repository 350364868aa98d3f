import { describe, expect, it } from 'vitest';

import {
  acceptedTypesText,
  extensionOf,
  isNotebook,
  portalAccepts,
  unsupportedTypeMessage
} from '../src/filetypes';

describe('portal file types', () => {
  it('reads extensions case-insensitively, ignoring dot files and folders', () => {
    expect(extensionOf('work/T.VOT')).toBe('.vot');
    expect(extensionOf('a.b/c')).toBe('');
    expect(extensionOf('.hidden')).toBe('');
    expect(extensionOf('x.tar.gz')).toBe('.gz');
  });

  it('accepts the table types of the contract and nothing else', () => {
    for (const p of ['a.xml', 'b.vot', 'c.votable', 'd.parquet', 'e.csv', 'f.fits', 'G.CSV']) {
      expect(portalAccepts(p), p).toBe(true);
    }
    for (const p of ['a.ipynb', 'b.png', 'c.txt', 'noext', 'd.fits.gz', 'e.json']) {
      expect(portalAccepts(p), p).toBe(false);
    }
  });

  it('names the refused type and the accepted ones', () => {
    const msg = unsupportedTypeMessage('work/plot.png');
    expect(msg).toContain('".png" files');
    expect(msg).toContain('plot.png');
    expect(msg).toContain('.parquet (Parquet)');
    expect(msg).toContain('.xml, .vot, .votable (VOTable)');
    expect(unsupportedTypeMessage('README')).toContain('files without an extension');
    expect(acceptedTypesText().split(';')).toHaveLength(4);
  });

  it('knows notebooks', () => {
    expect(isNotebook('a/b.ipynb')).toBe(true);
    expect(isNotebook('a/b.py')).toBe(false);
  });
});
