/**
 * Datalabs in JupyterLab. Each part of the UI is its own plugin module; this file only lists them.
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import dataPlugins from './data';
import editorPlugins from './editor';
import pipelinesPlugins from './pipelines';

const plugins: JupyterFrontEndPlugin<any>[] = [...dataPlugins, ...pipelinesPlugins, ...editorPlugins];

export default plugins;
