"""Decisions the 3D Slicer module makes, as plain functions importable without ``slicer`` and without ``torch``.

- ``ijk_geometry``: thick axis, output grid and IJK-to-RAS of a synthesized volume;
- ``naming``: output node names and provenance attributes;
- ``dicom_thickness``: the Slice Thickness of a volume loaded from DICOM;
- ``thickness_field``: the panel's slice thickness (value, source, request) and its adaptation defaults;
- ``process_protocol``: the progress lines of the background process and its command line;
- ``process_runner``: running that process without blocking, reading its output, ending its process tree;
- ``batch_args`` and ``batch_runner``: the headless batch command;
- ``dependencies``: what must be installed, and installing it in Slicer (Slicer calls only at call time);
- ``layout``: the linked side-by-side comparison views (Slicer calls only at call time, none without a main window).
"""
