/**
 * The Data panel plugin: puts the panel in the left sidebar and adds its command to the
 * palette and the launcher.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';

import { DataPanel, dataIcon } from './panel';
import { IDataActions } from './volumes';

export namespace CommandIDs {
  export const openDataPanel = 'datalabs:open-data-panel';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'datalabs-jupyterlab:data',
  description: 'The Data panel: archive volumes and your own storage.',
  autoStart: true,
  optional: [ICommandPalette, ILauncher, IDefaultFileBrowser, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    browser: IDefaultFileBrowser | null,
    restorer: ILayoutRestorer | null
  ) => {
    const actions: IDataActions = {
      openInFileBrowser: (path: string) => {
        // The file browser's own command: it navigates and shows the browser.
        void app.commands.execute('filebrowser:go-to-path', { path: `/${path}` });
      },
      refreshFileBrowser: (gone?: string) => {
        if (!browser) {
          return;
        }
        // A browser left inside a folder that was just unmounted would say "Directory not
        // found" on its next poll: step out of it first.
        const here = browser.model.path;
        if (gone && (here === gone || here.startsWith(`${gone}/`))) {
          void browser.model.cd(`/${gone.split('/').slice(0, -1).join('/')}`);
        } else {
          void browser.model.refresh();
        }
      }
    };
    const panel = new DataPanel(actions);
    app.shell.add(panel, 'left', { rank: 150 });
    restorer?.add(panel, panel.id);

    app.commands.addCommand(CommandIDs.openDataPanel, {
      label: 'Open the Data panel',
      caption: 'Archive volumes and your own storage',
      icon: dataIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: CommandIDs.openDataPanel, category: 'Datalabs' });
    launcher?.add({ command: CommandIDs.openDataPanel, category: 'Other', rank: 50 });
  }
};

export default [plugin];
