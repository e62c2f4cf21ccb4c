/**
 * The volume list's logic, kept free of React and JupyterLab so that it is cheap to test. The
 * server searches, filters and groups the catalogue (`GET volumes?limit=...`, see
 * `datalabs_volumes.listing`): the panel asks for one page and renders it, so opening and
 * searching cost the same for 100 volumes as for 10,000.
 */
import { IVolume, IVolumePage } from './types';

/** Which volumes the state filter keeps. */
export type StateFilter = 'all' | 'attached' | 'available' | 'broken';

/** What the panel asks for: the search words, the state filter, the rows, the shut groups. */
export interface IPageRequest {
  query: string;
  state: StateFilter;
  limit: number;
  collapsed: ReadonlySet<string>;
}

/** The API path of that page: `volumes?limit=50&q=...&collapsed=...`. */
export function pagePath(request: IPageRequest): string {
  const params = new URLSearchParams({ limit: String(request.limit) });
  if (request.query.trim()) {
    params.set('q', request.query.trim());
  }
  if (request.state !== 'all') {
    params.set('state', request.state);
  }
  for (const mission of [...request.collapsed].sort()) {
    params.append('collapsed', mission);
  }
  return `volumes?${params.toString()}`;
}

/** A mission's heading and the rows of it that the page holds. */
export interface IGroup {
  mission: string;
  /** How many volumes of this mission match. */
  total: number;
  /** The rows of it in the page (none when collapsed or past the row budget). */
  rows: IVolume[];
  collapsed: boolean;
}

/** The page's groups, each with its rows, in the server's order. */
export function groupRows(page: IVolumePage): IGroup[] {
  const rows = new Map<string, IVolume[]>();
  for (const volume of page.volumes) {
    const list = rows.get(volume.mission);
    if (list) {
      list.push(volume);
    } else {
      rows.set(volume.mission, [volume]);
    }
  }
  return page.groups.map(g => ({ ...g, rows: rows.get(g.mission) ?? [] }));
}

/** The page with one volume replaced by its new state (after attach or detach). */
export function withVolume(page: IVolumePage, changed: IVolume): IVolumePage {
  return { ...page, volumes: page.volumes.map(v => (v.id === changed.id ? changed : v)) };
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
