import { describe, expect, it } from 'vitest';

import { describeSize, filterVolumes, formatBytes, groupRows, indexVolumes } from './filter';
import { IVolume } from './types';

function volume(id: string, mission: string, extra: Partial<IVolume> = {}): IVolume {
  return {
    id,
    title: `Title of ${id}`,
    mission,
    description: `About ${id}`,
    path: `data/${id}`,
    mounted: false,
    read_only: true,
    versions: [],
    size: null,
    health: null,
    ...extra
  };
}

describe('the volume list', () => {
  const volumes = [
    volume('spice-juice', 'JUICE', { description: 'SPICE kernels for Ganymede' }),
    volume('psa-rosetta', 'Rosetta', { mounted: true, health: { state: 'ok', reason: '' } }),
    volume('rosetta-broken', 'Rosetta', {
      mounted: true,
      health: { state: 'broken', reason: 'Transport endpoint is not connected' }
    }),
    volume('esasky-catalogue', 'ESASky')
  ];
  const indexed = indexVolumes(volumes);

  it('sorts by mission, then title', () => {
    expect(indexed.map(i => i.volume.id)).toEqual([
      'esasky-catalogue',
      'spice-juice',
      'psa-rosetta',
      'rosetta-broken'
    ]);
  });

  it('finds every word of the query in id, title, mission or description', () => {
    const ids = (q: string) => filterVolumes(indexed, q).map(i => i.volume.id);
    expect(ids('')).toHaveLength(4);
    expect(ids('ganymede')).toEqual(['spice-juice']);
    expect(ids('ROSETTA broken')).toEqual(['rosetta-broken']);
    expect(ids('esasky')).toEqual(['esasky-catalogue']);
    expect(ids('nothing-like-this')).toEqual([]);
  });

  it('filters by mounted state and health', () => {
    const ids = (s: 'attached' | 'available' | 'broken') =>
      filterVolumes(indexed, '', s).map(i => i.volume.id);
    expect(ids('attached')).toEqual(['psa-rosetta', 'rosetta-broken']);
    expect(ids('available')).toEqual(['esasky-catalogue', 'spice-juice']);
    expect(ids('broken')).toEqual(['rosetta-broken']);
  });

  it('renders at most the row budget, group by group, and skips collapsed groups', () => {
    const { groups, hidden } = groupRows(indexed, 2);
    expect(groups.map(g => [g.mission, g.total, g.rows.length])).toEqual([
      ['ESASky', 1, 1],
      ['JUICE', 1, 1],
      ['Rosetta', 2, 0]
    ]);
    expect(hidden).toBe(2);
    const folded = groupRows(indexed, 2, new Set(['ESASky']));
    expect(folded.groups[0].collapsed).toBe(true);
    expect(folded.groups.map(g => g.rows.length)).toEqual([0, 1, 1]);
    expect(folded.hidden).toBe(1);
  });

  it('keeps filtering 10,000 volumes cheap', () => {
    const many = Array.from({ length: 10000 }, (_, i) => volume(`v-${i}`, `Mission ${i % 50}`));
    const big = indexVolumes(many);
    const start = performance.now();
    const found = filterVolumes(big, 'v-123');
    const { groups } = groupRows(found, 100);
    const expected = ['v-123', ...Array.from({ length: 10 }, (_, i) => `v-123${i}`)];
    expect(found.map(i => i.volume.id).sort()).toEqual(expected.sort());
    expect(groups.reduce((n, g) => n + g.rows.length, 0)).toBe(11);
    expect(performance.now() - start).toBeLessThan(50);
  });
});

describe('sizes', () => {
  it('reads like a file manager', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1500)).toBe('1.5 kB');
    expect(formatBytes(123_456_789)).toBe('123 MB');
    expect(describeSize({ bytes: 2_000_000, files: 1, complete: true })).toBe('2.0 MB, 1 file');
    expect(describeSize({ bytes: 10, files: 20001, complete: false })).toBe(
      'at least 10 B, 20,001 files'
    );
    expect(describeSize(null)).toBe('size unknown');
  });
});
