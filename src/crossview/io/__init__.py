"""Input and output: sources, buffers, sinks and file formats (``crossview.io.formats``)."""
