/**
 * The Pipeline Editor as a JupyterLab document widget for `.cwl` files.
 *
 * Text and graph views of one file share its document context. The file on disk is the
 * truth: the graph is read from it (`GET editor/graph`) and written to it (`PUT editor/graph`,
 * which merges into the text so comments survive), after which the context is reverted so that
 * open text editors show the new text. When a text editor saves the file, the graph is read
 * again (unless it has unsaved edits of its own, then the editor says so).
 */
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { EditorView } from './canvas';
import { EditorController } from './controller';

export const FACTORY = 'Pipeline Editor';

class EditorContent extends ReactWidget {
  constructor(readonly controller: EditorController) {
    super();
    this.addClass('dl-pipeline-editor');
  }

  render(): JSX.Element {
    return <EditorView controller={this.controller} />;
  }
}

export class PipelineEditorWidget extends DocumentWidget<EditorContent> {
  get controller(): EditorController {
    return this.content.controller;
  }

  /** Save the graph as CWL, then bring the shared text model up to date. */
  async save(): Promise<void> {
    const c = this.controller;
    if (this.context.model.dirty) {
      c.say({
        kind: 'error',
        text: 'The text of this file has unsaved changes in another view: save or revert them first.'
      });
      return;
    }
    this._saving = true;
    try {
      if (await c.save()) {
        await this.context.revert();
      }
    } finally {
      this._saving = false;
    }
    this._markDirty();
  }

  /** Called when the file changed on disk (a text view saved it). */
  onFileChanged(): void {
    // The first load of the context also says "changed"; the graph is read once it is ready.
    if (this._saving || !this.context.isReady) {
      return;
    }
    if (this.controller.dirty) {
      this.controller.say({
        kind: 'warning',
        text: 'The file was saved from another view; saving here will write over those changes.'
      });
    } else {
      void this.controller.load();
    }
  }

  _markDirty(): void {
    this.title.className = this.controller.dirty
      ? `${this.title.className.replace(/ ?jp-mod-dirty/g, '')} jp-mod-dirty`
      : this.title.className.replace(/ ?jp-mod-dirty/g, '');
  }

  private _saving = false;
}

export class PipelineEditorFactory extends ABCWidgetFactory<
  PipelineEditorWidget,
  DocumentRegistry.IModel
> {
  protected createNewWidget(context: DocumentRegistry.IContext<DocumentRegistry.IModel>) {
    const controller = new EditorController(context.localPath);
    const content = new EditorContent(controller);
    const widget = new PipelineEditorWidget({ context, content });
    widget.addClass('dl-pipeline-editor-widget');
    controller.subscribe(() => widget._markDirty());
    void context.ready.then(() => {
      void controller.load();
      void controller.loadPalette();
    });
    context.fileChanged.connect(() => widget.onFileChanged());
    context.pathChanged.connect(() => {
      controller.path = context.localPath;
      controller.changed();
    });
    return widget;
  }
}
