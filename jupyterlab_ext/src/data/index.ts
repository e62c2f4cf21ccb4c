import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

/** The Data panel (placeholder until the panel lands). */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'datalabs-jupyterlab:data',
  description: 'The Data panel: archive volumes and your own storage.',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    console.debug('datalabs: data panel loaded', app.name);
  }
};

export default [plugin];
