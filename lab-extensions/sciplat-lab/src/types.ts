/**
 * Shapes of the sciplat-lab server extension's REST answers (the REST contract).
 */

export interface ImageInfo {
  name: string;
  tag: string;
  display: string;
}

export interface SizeInfo {
  name: string;
  cpu: number | null;
  memory_limit_bytes: number | null;
}

export interface MemoryInfo {
  used_bytes: number | null;
  limit_bytes: number | null;
}

export interface LabStatus {
  image: ImageInfo;
  size: SizeInfo;
  memory: MemoryInfo;
}

/** Disk use of one workspace directory against its quota (the workspace service's figures). */
export interface DiskUse {
  path: string;
  used_bytes: number | null;
  quota_bytes: number | null;
}

export interface WorkspaceUsage {
  home: DiskUse;
  groups: (DiskUse & { name: string })[];
}

export interface StartupProblem {
  code: string;
  title: string;
  detail: string;
  remedy: string;
}

export interface TutorialNotebook {
  path: string;
  title: string;
}

export interface TutorialSection {
  name: string;
  title: string;
  notebooks: TutorialNotebook[];
}

export interface QueryRecord {
  job_id: string;
  query: string;
  phase: string;
  created: string;
  result_url: string | null;
  portal_url: string | null;
}

export interface RunSchemaAnswer {
  has_template: boolean;
  title?: string;
  description?: string;
  schema?: JSONSchema;
}

export interface RunSubmitted {
  job_id: string;
  status_url: string;
  html_url: string;
}

export interface RunStatus {
  status: string;
  html_url: string | null;
  error: string | null;
}

/** The subset of JSON Schema the parameter form understands. */
export interface JSONSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JSONSchema>;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number | boolean;
  exclusiveMaximum?: number | boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
}

/**
 * One call to the server extension: `method` and a path under `sciplat-lab/`; resolves with the
 * parsed JSON answer or rejects with an `ApiError`.
 */
export type Requester = (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<any>;
