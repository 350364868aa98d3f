/**
 * Which lab files the portal can show.
 */

/** Extensions the portal accepts, with what they are. */
export const PORTAL_TYPES: ReadonlyArray<{ ext: string; kind: string }> = [
  { ext: '.xml', kind: 'VOTable' },
  { ext: '.vot', kind: 'VOTable' },
  { ext: '.votable', kind: 'VOTable' },
  { ext: '.parquet', kind: 'Parquet' },
  { ext: '.csv', kind: 'CSV' },
  { ext: '.fits', kind: 'FITS table' }
];

/** The file's extension, lower case with its dot (`"a/b.VOT"` -> `".vot"`), or `""`. */
export function extensionOf(path: string): string {
  const base = path.split('/').pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot).toLowerCase() : '';
}

/** Whether the portal accepts the file at `path`. */
export function portalAccepts(path: string): boolean {
  const ext = extensionOf(path);
  return PORTAL_TYPES.some(t => t.ext === ext);
}

/** `".xml, .vot, .votable (VOTable), .parquet (Parquet), ..."`. */
export function acceptedTypesText(): string {
  const groups = new Map<string, string[]>();
  for (const t of PORTAL_TYPES) {
    groups.set(t.kind, [...(groups.get(t.kind) ?? []), t.ext]);
  }
  return [...groups].map(([kind, exts]) => `${exts.join(', ')} (${kind})`).join('; ');
}

/** The message for a file the portal cannot show, naming its type and the accepted ones. */
export function unsupportedTypeMessage(path: string): string {
  const ext = extensionOf(path);
  const what = ext ? `"${ext}" files` : 'files without an extension';
  return (
    `The portal cannot show ${what} (${path.split('/').pop()}). ` +
    `It accepts table files: ${acceptedTypesText()}.`
  );
}

/** Whether `path` is a notebook. */
export function isNotebook(path: string): boolean {
  return extensionOf(path) === '.ipynb';
}
