import { describe, expect, it } from 'vitest';

import { describeSize, formatBytes, groupRows, pagePath, withVolume } from './filter';
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

describe('a page of the volume list', () => {
  it('asks the server for the search, the state, the rows and the shut groups', () => {
    const base = { query: '', state: 'all' as const, limit: 50, collapsed: new Set<string>() };
    expect(pagePath(base)).toBe('volumes?limit=50');
    expect(
      pagePath({
        query: '  comet & dust ',
        state: 'attached',
        limit: 100,
        collapsed: new Set(['Rosetta', 'Mars Express'])
      })
    ).toBe('volumes?limit=100&q=comet+%26+dust&state=attached&collapsed=Mars+Express&collapsed=Rosetta');
  });

  it('puts each row under its mission, and keeps shut and empty groups', () => {
    const groups = groupRows({
      total: 9,
      matching: 5,
      groups: [
        { mission: 'JUICE', total: 2, collapsed: true },
        { mission: 'Rosetta', total: 2, collapsed: false },
        { mission: 'ESASky', total: 1, collapsed: false }
      ],
      volumes: [volume('psa-rosetta', 'Rosetta'), volume('rosetta-navcam', 'Rosetta')],
      hidden: 1
    });
    expect(groups.map(g => [g.mission, g.total, g.collapsed, g.rows.map(v => v.id)])).toEqual([
      ['JUICE', 2, true, []],
      ['Rosetta', 2, false, ['psa-rosetta', 'rosetta-navcam']],
      ['ESASky', 1, false, []]
    ]);
  });

  it('replaces a volume that was attached in place', () => {
    const page = {
      total: 2,
      matching: 2,
      groups: [{ mission: 'Rosetta', total: 2, collapsed: false }],
      volumes: [volume('a', 'Rosetta'), volume('b', 'Rosetta')],
      hidden: 0
    };
    const after = withVolume(page, volume('b', 'Rosetta', { mounted: true }));
    expect(after.volumes.map(v => v.mounted)).toEqual([false, true]);
    expect(page.volumes[1].mounted).toBe(false);
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
