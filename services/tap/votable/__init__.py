"""Streaming result writers: VOTable (BINARY2, TABLEDATA), CSV, TSV, FITS, VOParquet."""
