/**
 * The Pipeline Editor plugin: a "Pipeline Editor" widget factory for `.cwl` files (Open With;
 * the text editor stays the default), its commands in the palette (category Datalabs) and the
 * editor's toolbar.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  InputDialog,
  Notification,
  WidgetTracker,
  showDialog
} from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { openLaunchDialog } from '../pipelines/launch';
import { publish, runDraft } from './client';
import { FACTORY, PipelineEditorFactory, PipelineEditorWidget } from './widget';
import { errorMessage } from '../api';

export namespace CommandIDs {
  export const save = 'datalabs-editor:save';
  export const undo = 'datalabs-editor:undo';
  export const redo = 'datalabs-editor:redo';
  export const layout = 'datalabs-editor:layout';
  export const publish = 'datalabs-editor:publish';
  export const showRun = 'datalabs-editor:show-run';
  export const run = 'datalabs-editor:run';
  export const open = 'datalabs-editor:open';
}

const CATEGORY = 'Datalabs';
const FINAL = ['success', 'failed', 'cancelled'];

/** The small form of "Publish": label, description, keywords, author. */
class PublishForm extends Widget {
  constructor(defaults: { name: string; label: string; doc: string }) {
    super();
    this.addClass('dl-editor-publish');
    const row = (id: string, label: string, value: string, multiline = false) => {
      const wrap = document.createElement('label');
      wrap.className = 'dl-editor-field';
      const span = document.createElement('span');
      span.textContent = label;
      const input = document.createElement(multiline ? 'textarea' : 'input');
      input.className = 'jp-mod-styled';
      input.name = id;
      input.value = value;
      wrap.append(span, input);
      this.node.appendChild(wrap);
    };
    row('name', 'Name (part of the pipeline id)', defaults.name);
    row('label', 'Label', defaults.label);
    row('doc', 'Description', defaults.doc, true);
    row('keywords', 'Keywords (comma-separated)', '');
    row('author', 'Author', '');
  }

  getValue(): Record<string, string> {
    const out: Record<string, string> = {};
    this.node.querySelectorAll<HTMLInputElement>('input, textarea').forEach(i => {
      out[i.name] = i.value.trim();
    });
    return out;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'datalabs-jupyterlab:editor',
  description: 'The Pipeline Editor: CWL workflows as graphs you can edit.',
  autoStart: true,
  optional: [ICommandPalette, IDocumentManager],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    manager: IDocumentManager | null
  ) => {
    const { commands, docRegistry } = app;
    if (!docRegistry.getFileType('cwl')) {
      docRegistry.addFileType({
        name: 'cwl',
        displayName: 'CWL',
        extensions: ['.cwl'],
        mimeTypes: ['text/x-yaml'],
        contentType: 'file',
        fileFormat: 'text'
      });
    }
    const factory = new PipelineEditorFactory({
      name: FACTORY,
      label: 'Pipeline Editor',
      fileTypes: ['cwl'],
      modelName: 'text'
    });
    const tracker = new WidgetTracker<PipelineEditorWidget>({ namespace: 'datalabs-editor' });
    const current = () => tracker.currentWidget;
    const enabled = () => current() !== null;

    const showRun = async (widget: PipelineEditorWidget, id: string) => {
      // Follow the run until it ends, colouring the steps as they go.
      for (;;) {
        let state: string;
        try {
          state = await widget.controller.showRun(id);
        } catch (error) {
          widget.controller.say({ kind: 'error', text: errorMessage(error) });
          return;
        }
        if (FINAL.includes(state) || widget.isDisposed) {
          widget.controller.say({ kind: 'info', text: `Run ${id}: ${state}.` });
          return;
        }
        await new Promise(r => setTimeout(r, 1000));
      }
    };

    const doPublish = async (widget: PipelineEditorWidget) => {
      const graph = widget.controller.graph;
      const stem = widget.controller.path.split('/').pop()!.replace(/\.cwl$/, '');
      const result = await showDialog({
        title: 'Publish to your pipeline catalogue',
        body: new PublishForm({
          name: stem.replace(/[^A-Za-z0-9._-]/g, '-'),
          label: String(graph?.extras.label ?? stem),
          doc: String(graph?.extras.doc ?? '')
        }),
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Publish' })]
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      const v = result.value as Record<string, string>;
      try {
        const reply = await publish({
          path: widget.controller.path,
          process: widget.controller.process,
          name: v.name,
          label: v.label,
          doc: v.doc,
          keywords: v.keywords,
          author: v.author
        });
        widget.controller.say({
          kind: 'info',
          text: `Published as ${reply.pipeline.id}: find it in the Pipelines panel.`
        });
        Notification.success(`Published as ${reply.pipeline.id}`, { autoClose: 5000 });
      } catch (error) {
        widget.controller.say({ kind: 'error', text: `Not published: ${errorMessage(error)}` });
      }
    };

    /** Save, snapshot the file as a draft pipeline, and open the Pipelines launch dialog. */
    const doRun = async (widget: PipelineEditorWidget) => {
      const c = widget.controller;
      if (!manager) {
        c.say({ kind: 'error', text: 'Run needs the document manager, which is not loaded.' });
        return;
      }
      if (c.dirty) {
        await widget.save();
        if (c.dirty) {
          return;
        }
      }
      if (c.problems.length) {
        c.say({ kind: 'error', text: 'Fix the problems cwltool found before running.' });
        return;
      }
      let pipeline;
      try {
        pipeline = await runDraft(c.path, c.process);
      } catch (error) {
        c.say({ kind: 'error', text: `Cannot run: ${errorMessage(error)}` });
        return;
      }
      openLaunchDialog({
        pipeline,
        manager,
        root: PageConfig.getOption('serverRoot'),
        onLaunched: run => {
          c.say({ kind: 'info', text: `Run ${run.id} started; its steps are coloured here.` });
          void showRun(widget, run.id);
        }
      });
    };

    factory.widgetCreated.connect((_, widget) => {
      void tracker.add(widget);
      widget.title.iconClass = 'jp-MaterialIcon jp-FileIcon';
      const button = (name: string, label: string, tooltip: string, command: string) =>
        widget.toolbar.addItem(
          name,
          new ToolbarButton({
            label,
            tooltip,
            onClick: () => {
              app.shell.activateById(widget.id);
              void commands.execute(command);
            }
          })
        );
      button('save', 'Save', 'Save as CWL and validate (Ctrl+S)', CommandIDs.save);
      button('undo', 'Undo', 'Undo (Ctrl+Z)', CommandIDs.undo);
      button('redo', 'Redo', 'Redo (Ctrl+Shift+Z)', CommandIDs.redo);
      button('layout', 'Auto-layout', 'Place every node again', CommandIDs.layout);
      button('run', 'Run', 'Save, then launch this workflow with its inputs', CommandIDs.run);
      button('show-run', 'Show run', 'Colour the steps by the state of a run', CommandIDs.showRun);
      button('publish', 'Publish', 'Publish to your pipeline catalogue', CommandIDs.publish);
    });
    docRegistry.addWidgetFactory(factory);

    commands.addCommand(CommandIDs.save, {
      label: 'Save Pipeline as CWL and Validate',
      isEnabled: enabled,
      execute: () => current()?.save()
    });
    commands.addCommand(CommandIDs.undo, {
      label: 'Undo Pipeline Edit',
      isEnabled: enabled,
      execute: () => current()?.controller.undo()
    });
    commands.addCommand(CommandIDs.redo, {
      label: 'Redo Pipeline Edit',
      isEnabled: enabled,
      execute: () => current()?.controller.redo()
    });
    commands.addCommand(CommandIDs.layout, {
      label: 'Auto-layout the Pipeline',
      isEnabled: enabled,
      execute: () => current()?.controller.layout()
    });
    commands.addCommand(CommandIDs.publish, {
      label: 'Publish Pipeline to My Catalogue…',
      isEnabled: enabled,
      execute: () => {
        const widget = current();
        return widget ? doPublish(widget) : undefined;
      }
    });
    commands.addCommand(CommandIDs.run, {
      label: 'Run Pipeline…',
      caption: 'Save the workflow and open the launch dialog for it',
      isEnabled: enabled,
      execute: () => {
        const widget = current();
        return widget ? doRun(widget) : undefined;
      }
    });
    commands.addCommand(CommandIDs.showRun, {
      label: 'Show a Pipeline Run on the Canvas…',
      isEnabled: enabled,
      execute: async args => {
        const widget = current();
        if (!widget) {
          return;
        }
        let id = typeof args.run === 'string' ? args.run : null;
        if (!id) {
          const answer = await InputDialog.getText({
            title: 'Show a run on the canvas',
            label: 'Run id (from the Pipelines panel)',
            text: widget.controller.runId ?? ''
          });
          id = answer.button.accept ? answer.value : null;
        }
        if (id) {
          await showRun(widget, id.trim());
        }
      }
    });
    commands.addCommand(CommandIDs.open, {
      label: 'Open in Pipeline Editor',
      caption: 'Open the current CWL file as a graph',
      isEnabled: () => !!app.shell.currentWidget && currentPath(app) !== null,
      execute: () => {
        const path = currentPath(app);
        return path
          ? commands.execute('docmanager:open', { path, factory: FACTORY })
          : undefined;
      }
    });
    app.commands.addKeyBinding({
      command: CommandIDs.save,
      keys: ['Accel S'],
      selector: '.dl-pipeline-editor'
    });
    app.commands.addKeyBinding({
      command: CommandIDs.undo,
      keys: ['Accel Z'],
      selector: '.dl-editor-canvas'
    });
    app.commands.addKeyBinding({
      command: CommandIDs.redo,
      keys: ['Accel Shift Z'],
      selector: '.dl-editor-canvas'
    });
    for (const id of [
      CommandIDs.open,
      CommandIDs.save,
      CommandIDs.undo,
      CommandIDs.redo,
      CommandIDs.layout,
      CommandIDs.run,
      CommandIDs.showRun,
      CommandIDs.publish
    ]) {
      palette?.addItem({ command: id, category: CATEGORY });
    }
    console.debug('datalabs: pipeline editor loaded');
  }
};

/** The `.cwl` path of the current document widget, if it is one. */
function currentPath(app: JupyterFrontEnd): string | null {
  const widget = app.shell.currentWidget as unknown as { context?: { localPath?: string } };
  const path = widget?.context?.localPath;
  return path && path.endsWith('.cwl') ? path : null;
}

export default [plugin];
