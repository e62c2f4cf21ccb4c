/**
 * Response types of the storage API (`docs/api/storage.openapi.yaml`) as the Data panel uses
 * them: hosted archive volumes, their listings, the user's connections and the backends.
 */

/** How a mounted volume or an attached connection is doing. */
export interface IHealth {
  state: 'ok' | 'broken' | 'detached';
  reason: string;
}

/** A hosted archive volume the user may read (`GET volumes`). */
export interface IVolume {
  id: string;
  title: string;
  mission: string;
  description: string;
  /** Where it is (or would be) mounted, relative to the server's root: `data/<id>`. */
  path: string;
  mounted: boolean;
  read_only: boolean;
  versions: string[];
  size: { bytes: number; files: number; complete: boolean } | null;
  health: IHealth | null;
}

/** One page of the volumes (`GET volumes?limit=...`), searched and grouped on the server. */
export interface IVolumePage {
  /** Volumes the user may read. */
  total: number;
  /** Of those, the ones matching the search and the state filter. */
  matching: number;
  /** Every mission with a matching volume, in order, with its count. */
  groups: { mission: string; total: number; collapsed: boolean }[];
  /** The page's rows: at most the limit asked for, none from collapsed missions. */
  volumes: IVolume[];
  /** Matching volumes of expanded missions left out by the limit. */
  hidden: number;
}

/** One folder of a volume, listed without mounting it (`GET volumes/<id>/browse`). */
export interface IListing {
  volume: string;
  path: string;
  truncated: boolean;
  entries: { name: string; type: 'file' | 'directory'; size: number | null }[];
}

/** A storage backend users may connect (`GET backends`). */
export interface IBackend {
  backend: string;
  title: string;
  options: string[];
  secrets: string[];
  required: string[];
  choices: Record<string, string[]>;
}

/** What `POST connections` takes; secrets in clear, once. */
export interface INewConnection {
  name: string;
  backend: string;
  options: Record<string, string>;
  path?: string;
  writable?: boolean;
}

/** A saved connection as the server shows it: secrets come back redacted. */
export interface IConnection {
  name: string;
  backend: string;
  options: Record<string, string | number | boolean>;
  path?: string;
  writable?: boolean;
  attached: boolean;
  mount: string;
  read_only: boolean;
  health: IHealth | null;
}
