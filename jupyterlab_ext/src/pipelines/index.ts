import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

/** The Pipelines panel (placeholder until the panel lands). */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'datalabs-jupyterlab:pipelines',
  description: 'The Pipelines panel and the runs viewer.',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    console.debug('datalabs: pipelines panel loaded', app.name);
  }
};

export default [plugin];
