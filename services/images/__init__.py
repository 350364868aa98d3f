"""Image access services: SIA 2.0 (``sia``), DataLink (``datalink``) and SODA (``soda``) over
the data preview's Butler repository and ObsCore table."""
