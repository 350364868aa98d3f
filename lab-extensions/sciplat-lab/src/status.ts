/**
 * Status bar text: image, size, memory use and the home's disk use against its quota.
 */
import type { DiskUse, LabStatus, WorkspaceUsage } from './types';

const GIB = 1024 ** 3;

/** Bytes as GiB with one decimal (`1288490188` -> `"1.2"`); `"?"` when unknown. */
export function gib(bytes: number | null | undefined): string {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) {
    return '?';
  }
  return (bytes / GIB).toFixed(1);
}

/** `Mem 1.2/4.0 GiB`, or `Mem 1.2 GiB` when there is no limit. */
export function memoryText(used: number | null, limit: number | null): string {
  if (typeof limit === 'number' && limit > 0) {
    return `Mem ${gib(used)}/${gib(limit)} GiB`;
  }
  return `Mem ${gib(used)} GiB`;
}

/** The memory limit in force: the measured one, else the size's. */
function effectiveLimit(status: LabStatus): number | null {
  return status.memory.limit_bytes ?? status.size.memory_limit_bytes ?? null;
}

/** `Home 0.3/10.0 GiB`, or `Home 0.3 GiB` when the quota is unknown. */
export function diskText(label: string, use: DiskUse): string {
  if (typeof use.quota_bytes === 'number' && use.quota_bytes > 0) {
    return `${label} ${gib(use.used_bytes)}/${gib(use.quota_bytes)} GiB`;
  }
  return `${label} ${gib(use.used_bytes)} GiB`;
}

/** Fraction of the quota in use (0..1), or null without figures. */
export function diskFraction(use: DiskUse): number | null {
  const { used_bytes: used, quota_bytes: quota } = use;
  if (typeof quota !== 'number' || quota <= 0 || typeof used !== 'number') {
    return null;
  }
  return used / quota;
}

/** Tooltip lines: the home and each group directory against its quota. */
export function usageTooltip(usage: WorkspaceUsage): string[] {
  const line = (label: string, use: DiskUse): string => {
    const frac = diskFraction(use);
    return `${diskText(label, use)}` + (frac !== null ? ` (${Math.round(frac * 100)}%)` : '');
  };
  return [
    line('Disk: home', usage.home),
    ...usage.groups.map(g => line(`Disk: group ${g.name}`, g))
  ];
}

/** `<image display> · <size name> · Mem 1.2/4.0 GiB[ · Home 0.3/10.0 GiB]`. */
export function statusText(status: LabStatus, usage?: WorkspaceUsage | null): string {
  const image = status.image.display || `${status.image.name}:${status.image.tag}`;
  const parts = [image];
  if (status.size.name) {
    parts.push(status.size.name);
  }
  parts.push(memoryText(status.memory.used_bytes, effectiveLimit(status)));
  if (usage) {
    parts.push(diskText('Home', usage.home));
  }
  return parts.join(' · ');
}

/** Fraction of the limit in use (0..1+), or null without a limit. */
export function memoryFraction(status: LabStatus): number | null {
  const limit = effectiveLimit(status);
  const used = status.memory.used_bytes;
  if (typeof limit !== 'number' || limit <= 0 || typeof used !== 'number') {
    return null;
  }
  return used / limit;
}

/** The multi-line tooltip with the details. */
export function statusTooltip(status: LabStatus, usage?: WorkspaceUsage | null): string {
  const lines = [
    `Image: ${status.image.name}:${status.image.tag}` +
      (status.image.display ? ` (${status.image.display})` : ''),
    `Size: ${status.size.name || 'unknown'}` +
      (status.size.cpu != null ? `, ${status.size.cpu} CPU` : '') +
      (status.size.memory_limit_bytes != null
        ? `, ${gib(status.size.memory_limit_bytes)} GiB memory`
        : '')
  ];
  const limit = effectiveLimit(status);
  let mem = `Memory: ${gib(status.memory.used_bytes)} GiB used`;
  if (typeof limit === 'number' && limit > 0) {
    const frac = memoryFraction(status);
    mem += ` of ${gib(limit)} GiB` + (frac !== null ? ` (${Math.round(frac * 100)}%)` : '');
  } else {
    mem += ', no limit';
  }
  lines.push(mem);
  if (usage) {
    lines.push(...usageTooltip(usage));
  }
  return lines.join('\n');
}

/** The text shown when the status cannot be read. */
export const STATUS_UNAVAILABLE = 'sciplat: status unavailable';
