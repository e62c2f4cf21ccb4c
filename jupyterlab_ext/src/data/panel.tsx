/**
 * The Data panel in the left sidebar: archive volumes and the user's own connections.
 */
import React, { useState } from 'react';

import { ReactWidget, LabIcon, refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';

import { ConnectionsSection } from './connections';
import { IDataActions, VolumesSection } from './volumes';

/** A drum of data, drawn with the theme's icon colour so it follows light and dark themes. */
export const dataIcon = new LabIcon({
  name: 'datalabs:data',
  svgstr: `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2C7.6 2 4 3.3 4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5c0-1.7-3.6-3-8-3zm0 2c3.9 0 6 1.1 6 1s-2.1 1-6 1-6-1.1-6-1 2.1-1 6-1zm6 15c0 .3-2.1 1-6 1s-6-.7-6-1v-2.4c1.5.8 3.7 1.2 6 1.2s4.5-.4 6-1.2V19zm0-5c0 .3-2.1 1-6 1s-6-.7-6-1v-2.4c1.5.8 3.7 1.2 6 1.2s4.5-.4 6-1.2V14zm0-5c0 .3-2.1 1-6 1s-6-.7-6-1V6.6C7.5 7.4 9.7 7.8 12 7.8s4.5-.4 6-1.2V9z"/>
  </g>
</svg>`
});

function DataPanelView(props: { actions: IDataActions }): JSX.Element {
  // Bumping it reloads both sections from the server.
  const [reload, setReload] = useState(0);
  return (
    <div className="dl-data-panel" data-testid="dl-data-panel">
      <div className="dl-toolbar">
        <h1 className="dl-title">Data</h1>
        <button
          type="button"
          className="dl-button dl-icon-button"
          onClick={() => setReload(reload + 1)}
          title="Reload volumes and connections"
          aria-label="Reload volumes and connections"
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      <VolumesSection actions={props.actions} reload={reload} />
      <ConnectionsSection actions={props.actions} reload={reload} />
    </div>
  );
}

/**
 * The panel's widget. JupyterLab attaches sidebar widgets, hidden, as it starts; the panel asks
 * the server for nothing until it is first shown, so a session that never opens it pays nothing
 * (listing 10,000 volumes takes the server seconds).
 */
export class DataPanel extends ReactWidget {
  constructor(private readonly actions: IDataActions) {
    super();
    this.id = 'datalabs-data-panel';
    this.addClass('dl-panel');
    this.title.icon = dataIcon;
    this.title.caption = 'Data: archive volumes and your own storage';
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this.shown) {
      this.shown = true;
      this.update();
    }
  }

  protected render(): JSX.Element {
    return this.shown ? <DataPanelView actions={this.actions} /> : <div className="dl-data-panel" />;
  }

  private shown = false;
}
