import { describe, expect, it } from 'vitest';

import {
  diskFraction,
  diskText,
  gib,
  memoryFraction,
  memoryText,
  statusText,
  statusTooltip,
  usageTooltip
} from '../src/status';
import type { LabStatus, WorkspaceUsage } from '../src/types';

const GIB = 1024 ** 3;

function status(used: number | null, limit: number | null, sizeLimit: number | null = null) {
  return {
    image: { name: 'recommended', tag: '2026.11', display: 'Recommended (2026.11)' },
    size: { name: 'Medium', cpu: 2, memory_limit_bytes: sizeLimit },
    memory: { used_bytes: used, limit_bytes: limit }
  } as LabStatus;
}

describe('memory text', () => {
  it('formats GiB with one decimal', () => {
    expect(gib(1.2 * GIB)).toBe('1.2');
    expect(gib(0)).toBe('0.0');
    expect(gib(null)).toBe('?');
    expect(gib(-1)).toBe('?');
    expect(gib(Number.NaN)).toBe('?');
  });

  it('shows the limit when there is one', () => {
    expect(memoryText(1.2 * GIB, 4 * GIB)).toBe('Mem 1.2/4.0 GiB');
    expect(memoryText(1.2 * GIB, null)).toBe('Mem 1.2 GiB');
    expect(memoryText(1.2 * GIB, 0)).toBe('Mem 1.2 GiB');
  });
});

describe('statusText', () => {
  it('joins image, size and memory', () => {
    expect(statusText(status(1.2 * GIB, 4 * GIB))).toBe(
      'Recommended (2026.11) · Medium · Mem 1.2/4.0 GiB'
    );
  });

  it("uses the size's limit when the cgroup has none", () => {
    expect(statusText(status(2 * GIB, null, 8 * GIB))).toBe(
      'Recommended (2026.11) · Medium · Mem 2.0/8.0 GiB'
    );
  });

  it('falls back to name:tag and skips an unnamed size', () => {
    const s = status(GIB, null);
    s.image.display = '';
    s.size.name = '';
    expect(statusText(s)).toBe('recommended:2026.11 · Mem 1.0 GiB');
  });
});

describe('statusTooltip and fraction', () => {
  it('gives details and the percentage', () => {
    const tip = statusTooltip(status(1 * GIB, 4 * GIB, 4 * GIB));
    expect(tip).toContain('Image: recommended:2026.11 (Recommended (2026.11))');
    expect(tip).toContain('Size: Medium, 2 CPU, 4.0 GiB memory');
    expect(tip).toContain('Memory: 1.0 GiB used of 4.0 GiB (25%)');
    expect(memoryFraction(status(3 * GIB, 4 * GIB))).toBeCloseTo(0.75);
  });

  it('says when there is no limit', () => {
    expect(statusTooltip(status(GIB, null))).toContain('Memory: 1.0 GiB used, no limit');
    expect(memoryFraction(status(GIB, null))).toBeNull();
    expect(memoryFraction(status(null, GIB))).toBeNull();
  });
});

describe('disk use against the quota', () => {
  const usage = (used: number | null, quota: number | null) =>
    ({
      home: { path: 'home/alice', used_bytes: used, quota_bytes: quota },
      groups: [{ name: 'users', path: 'groups/users', used_bytes: GIB / 2, quota_bytes: 50 * GIB }]
    }) as WorkspaceUsage;

  it('shows the home after the memory', () => {
    expect(statusText(status(GIB, 4 * GIB), usage(0.3 * GIB, 10 * GIB))).toBe(
      'Recommended (2026.11) · Medium · Mem 1.0/4.0 GiB · Home 0.3/10.0 GiB'
    );
    expect(diskText('Home', usage(0.3 * GIB, null).home)).toBe('Home 0.3 GiB');
    expect(statusText(status(GIB, 4 * GIB), null)).not.toContain('Home');
  });

  it('lists home and groups in the tooltip with percentages', () => {
    const tip = statusTooltip(status(GIB, 4 * GIB), usage(GIB, 4 * GIB));
    expect(tip).toContain('Disk: home 1.0/4.0 GiB (25%)');
    expect(tip).toContain('Disk: group users 0.5/50.0 GiB (1%)');
    expect(usageTooltip(usage(null, null))[0]).toBe('Disk: home ? GiB');
  });

  it('gives the fraction only with both figures', () => {
    expect(diskFraction(usage(3 * GIB, 4 * GIB).home)).toBeCloseTo(0.75);
    expect(diskFraction(usage(GIB, null).home)).toBeNull();
    expect(diskFraction(usage(null, GIB).home)).toBeNull();
    expect(diskFraction(usage(GIB, 0).home)).toBeNull();
  });
});
