/**
 * Buttons the volume rows and the connection rows share: a button that shows its action is
 * under way, and the attach / open / detach group of anything that mounts under data/.
 */
import React from 'react';

import { IHealth } from './types';

/** What a broken mount says, in place, under its row. */
export function BrokenMount(props: { health: IHealth | null }): JSX.Element | null {
  if (props.health?.state !== 'broken') {
    return null;
  }
  return (
    <div className="dl-error" role="alert">
      Mount broken: {props.health.reason}
    </div>
  );
}

/** A button for one of a row's actions; while any action runs, every such button waits. */
export function ActionButton<A extends string>(props: {
  action: A;
  label: string;
  busyLabel: string;
  /** The action under way in this row, if any. */
  busy: string | null;
  run: (action: A) => void;
  describedBy: string;
  className?: string;
}): JSX.Element {
  const { action, label, busyLabel, busy, run, describedBy } = props;
  return (
    <button
      type="button"
      className={props.className ?? 'dl-button'}
      onClick={() => run(action)}
      disabled={busy !== null}
      aria-busy={busy === action}
      aria-describedby={describedBy}
    >
      {busy === action ? busyLabel : label}
    </button>
  );
}

/** Attach, or Open in file browser and Detach once it is mounted at `path`. */
export function MountActions(props: {
  mounted: boolean;
  path: string;
  busy: string | null;
  run: (action: 'attach' | 'detach') => void;
  openInFileBrowser: (path: string) => void;
  describedBy: string;
}): JSX.Element {
  const { mounted, path, busy, run, openInFileBrowser, describedBy } = props;
  if (!mounted) {
    return (
      <ActionButton
        action="attach"
        label="Attach"
        busyLabel="Attaching..."
        busy={busy}
        run={run}
        describedBy={describedBy}
        className="dl-button dl-primary"
      />
    );
  }
  return (
    <>
      <button
        type="button"
        className="dl-button dl-primary"
        onClick={() => openInFileBrowser(path)}
        aria-describedby={describedBy}
      >
        Open in file browser
      </button>
      <ActionButton
        action="detach"
        label="Detach"
        busyLabel="Detaching..."
        busy={busy}
        run={run}
        describedBy={describedBy}
      />
    </>
  );
}
