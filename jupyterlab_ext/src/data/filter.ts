/**
 * The volume list's logic, kept free of React and JupyterLab so that it is cheap to test and
 * cheap to run on 10,000 volumes: each volume's search text is computed once per list, a
 * query is one pass of `includes`, and only a capped number of rows ever reach the DOM.
 */
import { IVolume } from './types';

/** Which volumes the state filter keeps. */
export type StateFilter = 'all' | 'attached' | 'available' | 'broken';

/** A volume with its lower-cased search text, made once when the list arrives. */
export interface IIndexedVolume {
  volume: IVolume;
  text: string;
}

/**
 * Sort by mission then title (then id) and attach each volume's search text. Plain string
 * comparison of a precomputed key: `localeCompare` made sorting 10,000 volumes cost more than
 * rendering them.
 */
export function indexVolumes(volumes: readonly IVolume[]): IIndexedVolume[] {
  const keyed = volumes.map(volume => ({
    volume,
    text: [volume.id, volume.title, volume.mission, volume.description].join('\n').toLowerCase(),
    key: `${volume.mission.toLowerCase()}\u0000${volume.title.toLowerCase()}\u0000${volume.id}`
  }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map(({ volume, text }) => ({ volume, text }));
}

function keepState(volume: IVolume, state: StateFilter): boolean {
  switch (state) {
    case 'attached':
      return volume.mounted;
    case 'available':
      return !volume.mounted;
    case 'broken':
      return volume.health?.state === 'broken';
    default:
      return true;
  }
}

/**
 * The volumes matching every word of `query` (in id, title, mission or description) and the
 * state filter, in the index's order.
 */
export function filterVolumes(
  indexed: readonly IIndexedVolume[],
  query: string,
  state: StateFilter = 'all'
): IIndexedVolume[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0 && state === 'all') {
    return indexed as IIndexedVolume[];
  }
  return indexed.filter(
    item => keepState(item.volume, state) && words.every(w => item.text.includes(w))
  );
}

/** A mission's heading and the rows of it that are rendered. */
export interface IGroup {
  mission: string;
  /** How many volumes of this mission match. */
  total: number;
  /** The rendered ones (none when the group is collapsed or past the row budget). */
  rows: IVolume[];
  collapsed: boolean;
}

/**
 * Group the matching volumes by mission and hand out at most `limit` rows, first come first
 * served, so that rendering costs the same for 100 volumes as for 10,000. Collapsed groups
 * take no rows. `hidden` is how many matching rows of expanded groups were left out.
 */
export function groupRows(
  matching: readonly IIndexedVolume[],
  limit: number,
  collapsed: ReadonlySet<string> = new Set()
): { groups: IGroup[]; hidden: number } {
  const groups: IGroup[] = [];
  let current: IGroup | undefined;
  let budget = limit;
  let hidden = 0;
  for (const { volume } of matching) {
    if (!current || current.mission !== volume.mission) {
      current = {
        mission: volume.mission,
        total: 0,
        rows: [],
        collapsed: collapsed.has(volume.mission)
      };
      groups.push(current);
    }
    current.total++;
    if (current.collapsed) {
      continue;
    }
    if (budget > 0) {
      current.rows.push(volume);
      budget--;
    } else {
      hidden++;
    }
  }
  return { groups, hidden };
}

/** `1.5 MB` and the like (decimal units, as file managers show them). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const shown = unit === 0 || value >= 100 ? Math.round(value).toString() : value.toFixed(1);
  return `${shown} ${units[unit]}`;
}

/** What the row says about a volume's size: `12.3 MB, 42 files` (`at least` if not counted to the end). */
export function describeSize(size: IVolume['size']): string {
  if (!size) {
    return 'size unknown';
  }
  const files = `${size.files.toLocaleString('en')} file${size.files === 1 ? '' : 's'}`;
  const text = `${formatBytes(size.bytes)}, ${files}`;
  return size.complete ? text : `at least ${text}`;
}
