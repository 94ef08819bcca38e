"""The slice thickness of a volume loaded from DICOM: Slice Thickness (0018,0050) of its instances.

Slicer's DICOM scalar-volume loader stores the SOP Instance UIDs of the files a volume came from in its
``DICOM.instanceUIDs`` attribute (space-separated); ``slicer.dicomDatabase.fileForInstance(uid)`` gives each
file and ``fileValue(file, "0018,0050")`` the tag's text. The database calls are passed in, so the decision is
plain Python and tested without Slicer.
"""

from __future__ import annotations

from statistics import median
from typing import Callable, List, Optional

SLICE_THICKNESS_TAG = "0018,0050"
# Files read at most: the tag is per instance but constant in a series; a few spread over the series suffice.
SAMPLED_INSTANCES = 5


def dicom_slice_thickness(
    instance_uids: Optional[str],
    file_for_instance: Callable[[str], str],
    file_value: Callable[[str, str], str],
) -> Optional[float]:
    """The median Slice Thickness (mm) over a few of the instances named in ``instance_uids`` (the volume's
    ``DICOM.instanceUIDs`` attribute), or ``None`` when the volume was not loaded from DICOM, its files are no
    longer in the database, or none of them carries a positive thickness."""
    uids = (instance_uids or "").split()
    if not uids:
        return None
    step = max(1, len(uids) // SAMPLED_INSTANCES)
    values: List[float] = []
    for uid in uids[::step][:SAMPLED_INSTANCES]:
        try:
            path = file_for_instance(uid)
            text = file_value(path, SLICE_THICKNESS_TAG) if path else ""
            value = float(str(text).split("\\")[0])
        except (ValueError, RuntimeError, OSError):
            continue
        if value > 0:
            values.append(value)
    return float(median(values)) if values else None
