#!/bin/sh
# Run by the Jupyter Docker Stacks' start script before the server starts (before-notebook.d):
# puts the datalab's example notebooks in the user's home, never overwriting the user's copies,
# as the local spawner does with DatalabsLocalSpawner.examples_dir.
if [ -d /opt/datalabs/examples ]; then
    mkdir -p "$HOME/examples"
    cp -R -n /opt/datalabs/examples/. "$HOME/examples/"
fi
