/**
 * The Pipelines plugin: the Pipelines panel (left sidebar), the launch dialog and the runs viewer
 * (main area), with their commands in the palette and a launcher item.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';

import { openLaunchDialog } from './launch';
import { PipelinesPanel } from './panel';
import { RunsView } from './runs';
import { IPipeline } from './types';

export namespace CommandIDs {
  export const openPanel = 'datalabs:open-pipelines';
  export const openRuns = 'datalabs:open-runs';
}

const CATEGORY = 'Datalabs';

/** Four steps joined together: a pipeline. */
export const pipelineIcon = new LabIcon({
  name: 'datalabs:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="1" y="9" width="6" height="6" rx="1"/>' +
    '<rect x="9" y="3" width="6" height="6" rx="1"/>' +
    '<rect x="9" y="15" width="6" height="6" rx="1"/>' +
    '<rect x="17" y="9" width="6" height="6" rx="1"/>' +
    '<rect x="7" y="11.25" width="10" height="1.5"/>' +
    '<rect x="11.25" y="9" width="1.5" height="6"/>' +
    '</g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'datalabs-jupyterlab:pipelines',
  description: 'The Pipelines panel (search and launch pipelines) and the runs viewer.',
  autoStart: true,
  requires: [IDocumentManager],
  optional: [ICommandPalette, ILauncher, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    manager: IDocumentManager,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    restorer: ILayoutRestorer | null
  ) => {
    const root = PageConfig.getOption('serverRoot');
    let viewer: MainAreaWidget<RunsView> | null = null;
    // The layout restorer reopens the runs viewer after a reload, on the run it showed.
    const tracker = new WidgetTracker<MainAreaWidget<RunsView>>({ namespace: 'datalabs-runs' });

    const launch = (pipeline: IPipeline, job?: Record<string, unknown>, opener?: HTMLElement) => {
      openLaunchDialog({
        pipeline,
        manager,
        root,
        job,
        opener,
        onLaunched: run => void app.commands.execute(CommandIDs.openRuns, { run: run.id })
      });
    };

    const openRuns = (run: string | null) => {
      let widget = viewer;
      if (!widget || widget.isDisposed) {
        const content = new RunsView({
          root,
          openFile: path => void app.commands.execute('docmanager:open', { path }),
          showInBrowser: path => void app.commands.execute('filebrowser:go-to-path', { path }),
          relaunch: (pipeline, inputs) => launch(pipeline, inputs),
          onShow: () => {
            if (viewer && tracker.has(viewer)) {
              void tracker.save(viewer);
            }
          }
        });
        widget = viewer = new MainAreaWidget({ content });
        widget.id = 'datalabs-runs';
        widget.title.label = 'Pipeline runs';
        widget.title.caption = 'Your pipeline runs: state, steps, logs, outputs';
        widget.title.icon = pipelineIcon;
        widget.title.closable = true;
      }
      if (!widget.isAttached) {
        app.shell.add(widget, 'main');
      }
      if (!tracker.has(widget)) {
        void tracker.add(widget);
      }
      widget.content.showRun(run);
      app.shell.activateById(widget.id);
    };

    const panel = new PipelinesPanel({
      launch: (p, opener) => launch(p, undefined, opener),
      openRuns: () => openRuns(null)
    });
    panel.id = 'datalabs-pipelines';
    panel.title.icon = pipelineIcon;
    panel.title.caption = 'Pipelines: search the catalogue and launch a pipeline';
    app.shell.add(panel, 'left', { rank: 410 });
    restorer?.add(panel, 'datalabs-pipelines');
    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.openRuns,
        args: widget => ({ run: widget.content.selected }),
        name: () => 'runs'
      });
    }

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open the Pipelines panel',
      caption: 'Search the pipeline catalogue and launch a pipeline',
      icon: pipelineIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.openRuns, {
      label: args => (args.isLauncher ? 'Pipeline runs' : 'Open pipeline runs'),
      caption: 'Your pipeline runs: state, steps, logs, outputs',
      icon: pipelineIcon,
      execute: args => openRuns(typeof args.run === 'string' ? args.run : null)
    });
    palette?.addItem({ command: CommandIDs.openPanel, category: CATEGORY });
    palette?.addItem({ command: CommandIDs.openRuns, category: CATEGORY });
    launcher?.add({
      command: CommandIDs.openRuns,
      category: CATEGORY,
      rank: 1,
      args: { isLauncher: true }
    });
  }
};

export default [plugin];
