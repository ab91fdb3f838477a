//! Pack the layer: site-packages.zip for pure-Python distributions, sitecustomize.py, and the deterministic layer zip.
