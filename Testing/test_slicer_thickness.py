"""The module panel's slice thickness: its state and source, the DICOM Slice Thickness lookup, the request it
makes, the adaptation defaults, and how a finished run's slice geometry is worded and recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import pytest

from CTSliceSynthesisLib.slicer_support import naming
from CTSliceSynthesisLib.slicer_support import thickness_field as tf
from CTSliceSynthesisLib.slicer_support.dicom_thickness import (
    SAMPLED_INSTANCES,
    SLICE_THICKNESS_TAG,
    dicom_slice_thickness,
)
from CTSliceSynthesisLib.slicer_support.thickness_field import ThicknessField


def no_lookup() -> Optional[float]:
    raise AssertionError("the DICOM header must not be read for the volume the field already belongs to")


# --- usable_thickness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.5, 0.625, 2.5, 5, tf.MAX_THICKNESS_MM, "3.0"])
def test_usable_thickness_keeps_thicknesses_the_spin_box_can_hold(value) -> None:
    assert tf.usable_thickness(value) == float(value)


@pytest.mark.parametrize(
    "value",
    [None, 0, 0.0, -1.25, -0.0, float("nan"), float("inf"), float("-inf"), tf.MAX_THICKNESS_MM + 0.001, 1e9,
     "thick", "", [], object()],
)
def test_usable_thickness_turns_anything_else_into_unknown(value) -> None:
    assert tf.usable_thickness(value) == 0.0


# --- for_input ----------------------------------------------------------------------------------------------


def test_a_value_typed_for_the_same_volume_is_kept() -> None:
    typed = ThicknessField("vtkMRMLScalarVolumeNode1", 3.0, 5.0)
    assert tf.for_input(typed, "vtkMRMLScalarVolumeNode1", no_lookup) is typed


def test_a_new_volume_takes_its_dicom_thickness() -> None:
    typed = ThicknessField("vtkMRMLScalarVolumeNode1", 3.0, 5.0)
    field = tf.for_input(typed, "vtkMRMLScalarVolumeNode2", lambda: 1.25)
    assert field == ThicknessField("vtkMRMLScalarVolumeNode2", 1.25, 1.25)
    assert tf.thickness_source(field.value, field.dicom_value) == tf.SOURCE_DICOM


@pytest.mark.parametrize("dicom", [None, 0.0, -2.0, float("nan"), 250.0])
def test_a_new_volume_without_a_usable_dicom_thickness_is_unknown(dicom) -> None:
    field = tf.for_input(ThicknessField("a", 3.0, 3.0), "b", lambda: dicom)
    assert field == ThicknessField("b", 0.0, 0.0)
    assert tf.thickness_source(field.value, field.dicom_value) is None


def test_no_volume_is_unknown_and_reads_no_header() -> None:
    assert tf.for_input(ThicknessField("a", 3.0, 5.0), "", no_lookup) == ThicknessField()
    assert tf.for_input(ThicknessField("a", 3.0, 5.0), None, no_lookup) == ThicknessField()  # type: ignore[arg-type]
    empty = ThicknessField()
    assert tf.for_input(empty, "", no_lookup) is empty


def test_coming_back_to_a_volume_reads_its_header_again() -> None:
    calls: List[str] = []

    def lookup() -> float:
        calls.append("read")
        return 5.0

    field = tf.for_input(ThicknessField(), "a", lookup)
    field = ThicknessField(field.volume_id, 4.0, field.dicom_value)  # the user types 4 mm
    field = tf.for_input(field, "a", lookup)
    assert field.value == 4.0 and calls == ["read"]
    field = tf.for_input(tf.for_input(field, "b", lambda: None), "a", lookup)
    assert field == ThicknessField("a", 5.0, 5.0) and calls == ["read", "read"]


# --- thickness_source and request_thickness -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dicom", "source"),
    [
        (5.0, 5.0, tf.SOURCE_DICOM),
        (0.625, 0.6251, tf.SOURCE_DICOM),  # the spin box rounds to 3 decimals
        (5.0, 5.0 + tf.TOLERANCE_MM, tf.SOURCE_DICOM),
        (5.0, 5.0 + 3 * tf.TOLERANCE_MM, tf.SOURCE_GIVEN),
        (3.0, 5.0, tf.SOURCE_GIVEN),
        (3.0, 0.0, tf.SOURCE_GIVEN),
        (0.0, 5.0, None),
        (0.0, 0.0, None),
        (-1.0, 0.0, None),
        (float("nan"), 5.0, None),
    ],
)
def test_thickness_source(value: float, dicom: float, source: Optional[str]) -> None:
    assert tf.thickness_source(value, dicom) == source


@pytest.mark.parametrize(
    ("value", "dicom", "expected"),
    [
        (5.0, 5.0, (5.0, "dicom")),
        (2.5, 5.0, (2.5, "given")),
        (2.5, 0.0, (2.5, "given")),
        (0.0, 5.0, (None, "given")),
        (0.0, 0.0, (None, "given")),
    ],
)
def test_request_thickness(value: float, dicom: float, expected) -> None:
    assert tf.request_thickness(value, dicom) == expected


def test_request_thickness_is_a_plain_float() -> None:
    thickness, _source = tf.request_thickness(3, 0)
    assert type(thickness) is float


@pytest.mark.parametrize(
    ("field", "volume_id", "axis", "expected"),
    [
        (ThicknessField("a", 5.0, 5.0), "a", 2, (5.0, "dicom")),
        (ThicknessField("a", 3.0, 5.0), "a", 2, (3.0, "given")),
        (ThicknessField("a", 3.0, 5.0), "a", 0, (3.0, "given")),  # typed: the user chose it for this axis
        (ThicknessField("a", 5.0, 5.0), "a", 0, (None, "given")),  # DICOM describes K only
        (ThicknessField("a", 5.0, 5.0), "a", 1, (None, "given")),
        (ThicknessField("a", 3.0, 0.0), "b", 2, (None, "given")),  # stored for another volume
        (ThicknessField("a", 0.0, 0.0), "a", 2, (None, "given")),
        (ThicknessField("", 3.0, 0.0), "", 2, (None, "given")),
    ],
)
def test_request_for_a_volume_and_axis(field: ThicknessField, volume_id: str, axis: int, expected) -> None:
    assert tf.for_request(field, volume_id, axis) == expected


# --- adaptation defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("default_steps", "expected"),
    [
        (0, (False, tf.ADAPT_STEPS_WHEN_OFF)),
        (-5, (False, tf.ADAPT_STEPS_WHEN_OFF)),
        (100, (True, 100)),
        (240, (True, 240)),
        (1, (True, tf.ADAPT_STEPS_RANGE[0])),
        (tf.ADAPT_STEPS_RANGE[1] + 1, (True, tf.ADAPT_STEPS_RANGE[1])),
    ],
)
def test_adaptation_defaults_follow_the_engine_default(default_steps: int, expected) -> None:
    on, steps = tf.adaptation_defaults(default_steps)
    assert (on, steps) == expected
    assert type(steps) is int
    assert tf.ADAPT_STEPS_RANGE[0] <= steps <= tf.ADAPT_STEPS_RANGE[1]


def test_adaptation_defaults_of_the_current_engine_default_fit_the_panel() -> None:
    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS

    on, steps = tf.adaptation_defaults(DEFAULT_ADAPT_STEPS)
    assert on == (DEFAULT_ADAPT_STEPS > 0)
    assert steps == DEFAULT_ADAPT_STEPS  # the panel starts with the engine's budget exactly


def test_the_panel_spin_box_is_in_steps_with_the_engine_default() -> None:
    """The .ui's adaptation spin box counts steps, within ADAPT_STEPS_RANGE, starting at the engine's default."""
    import xml.etree.ElementTree as ElementTree

    from CTSliceSynthesisLib.core.config import DEFAULT_ADAPT_STEPS

    ui = Path(__file__).resolve().parents[1] / "CTSliceSynthesis" / "Resources" / "UI" / "CTSliceSynthesis.ui"
    tree = ElementTree.parse(str(ui))
    boxes = [w for w in tree.iter("widget") if w.get("name") == "adaptStepsSpinBox"]
    assert len(boxes) == 1 and not [w for w in tree.iter("widget") if w.get("name") == "adaptSecondsSpinBox"]
    properties = {p.get("name"): p[0].text for p in boxes[0].findall("property")}
    assert properties["SlicerParameterName"] == "adaptSteps" and properties["suffix"].strip() == "steps"
    assert (int(properties["minimum"]), int(properties["maximum"])) == tf.ADAPT_STEPS_RANGE
    assert int(properties["value"]) == DEFAULT_ADAPT_STEPS


# --- dicom_slice_thickness ----------------------------------------------------------------------------------


class FakeDatabase:
    """``fileForInstance`` and ``fileValue`` of ``slicer.dicomDatabase`` over a dict of instance → tag text."""

    def __init__(self, values: Dict[str, Optional[str]], missing=(), broken=()) -> None:
        self.values = values
        self.missing = set(missing)
        self.broken = set(broken)
        self.files_read: List[str] = []

    def fileForInstance(self, uid: str) -> str:
        if uid in self.broken:
            raise RuntimeError("database closed")
        return "" if uid in self.missing or uid not in self.values else f"/db/{uid}.dcm"

    def fileValue(self, path: str, tag: str) -> str:
        assert tag == SLICE_THICKNESS_TAG == "0018,0050"
        self.files_read.append(path)
        value = self.values[path[len("/db/"):-len(".dcm")]]
        return "" if value is None else value


def lookup(uids: Optional[str], database: FakeDatabase) -> Optional[float]:
    return dicom_slice_thickness(uids, database.fileForInstance, database.fileValue)


def test_the_median_of_the_instances_is_taken() -> None:
    database = FakeDatabase({"1": "5.0", "2": "5", "3": "2.5"})
    assert lookup("1 2 3", database) == 5.0


def test_an_even_number_of_values_gives_the_middle_of_the_two() -> None:
    assert lookup("1 2", FakeDatabase({"1": "1.25", "2": "2.5"})) == pytest.approx(1.875)


@pytest.mark.parametrize(("text", "expected"), [("1.25\\2.5", 1.25), (" 0.625 ", 0.625), ("3\\", 3.0)])
def test_the_first_of_several_values_is_taken(text: str, expected: float) -> None:
    assert lookup("1", FakeDatabase({"1": text})) == expected


@pytest.mark.parametrize("uids", [None, "", "   "])
def test_no_instance_uids_reads_nothing(uids: Optional[str]) -> None:
    def unreachable(*args):
        raise AssertionError("nothing must be read")

    assert dicom_slice_thickness(uids, unreachable, unreachable) is None


def test_files_no_longer_in_the_database_are_skipped() -> None:
    database = FakeDatabase({"1": "5", "2": "5", "3": "2"}, missing={"1", "2"})
    assert lookup("1 2 3", database) == 2.0
    assert database.files_read == ["/db/3.dcm"]
    assert lookup("1 2 unknown", database) is None


@pytest.mark.parametrize("text", ["", None, "abc", "0", "-1.5", "\\"])
def test_bad_or_absent_text_is_ignored(text: Optional[str]) -> None:
    assert lookup("1", FakeDatabase({"1": text})) is None
    assert lookup("1 2", FakeDatabase({"1": text, "2": "3.0"})) == 3.0


def test_database_errors_are_ignored() -> None:
    database = FakeDatabase({"1": "5", "2": "4"}, broken={"1"})
    assert lookup("1 2", database) == 4.0


def test_at_most_a_few_files_spread_over_the_series_are_read() -> None:
    uids = [str(index) for index in range(200)]
    database = FakeDatabase({uid: "5" for uid in uids})
    assert lookup(" ".join(uids), database) == 5.0
    assert len(database.files_read) == SAMPLED_INSTANCES == 5
    indices = [int(path[len("/db/"):-len(".dcm")]) for path in database.files_read]
    assert indices[0] == 0 and indices[-1] >= 150  # spread over the series, not its first few files


@pytest.mark.parametrize("count", [1, 3, 5, 6, 9, 11])
def test_short_series_read_no_more_than_the_sample(count: int) -> None:
    uids = [str(index) for index in range(count)]
    database = FakeDatabase({uid: "2" for uid in uids})
    assert lookup(" ".join(uids), database) == 2.0
    assert len(database.files_read) == min(count, SAMPLED_INSTANCES)
    assert len(set(database.files_read)) == len(database.files_read)


# --- the finished run ---------------------------------------------------------------------------------------


def test_a_result_says_thickness_source_spacing_and_adaptation() -> None:
    info = {"slice_spacing_mm": 5.0, "slice_thickness_mm": 2.4321, "thickness_source": "estimated",
            "adapt_steps": 140, "adapt_seconds": None, "adapt_seed": 0, "adapt_capped": False, "adapted_steps": 140}
    text = tf.describe_result(info)
    assert text == ("Input slices 2.43 mm thick (estimated by the engine), 5 mm apart; adapted to this scan in 140 "
                    "steps (seed 0).")
    capped = tf.describe_result({**info, "adapt_seconds": 30.0, "adapt_capped": True, "adapted_steps": 37})
    assert capped.endswith("adapted to this scan in 37 steps (seed 0), cut short of 140 by the 30 s cap: "
                           "not reproducible.")


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ({"slice_spacing_mm": 5, "slice_thickness_mm": 5, "thickness_source": "dicom"}, "(from the DICOM header)"),
        ({"slice_spacing_mm": 5, "slice_thickness_mm": 3, "thickness_source": "given"}, "(as typed)"),
        ({"slice_spacing_mm": 5, "slice_thickness_mm": 5, "thickness_source": "spacing"}, "equal to the spacing"),
        ({"slice_spacing_mm": None, "slice_thickness_mm": None, "thickness_source": None}, "unknown"),
        ({}, "unknown"),
        ({"slice_thickness_mm": 5, "thickness_source": "dicom", "adapt_steps": 100, "adapted_steps": 0},
         "not adapted"),
        ({"slice_thickness_mm": 5, "thickness_source": "dicom", "adapt_steps": 100, "adapt_seconds": 0,
          "adapted_steps": 0}, "(from the DICOM header)"),
        ({"slice_thickness_mm": "bad", "adapted_steps": "x"}, "unknown"),
    ],
)
def test_result_wording(info: dict, words: str) -> None:
    text = tf.describe_result(info)
    assert words in text and text.endswith(".") and "\n" not in text
    if not info.get("adapt_steps") or info.get("adapt_seconds") == 0:
        assert "adapt" not in text


def test_the_result_geometry_is_recorded_on_the_output_node() -> None:
    attributes = naming.provenance_attributes(
        scale=2, axis_name="K", model_id="m+adapted12", model_sha256="0" * 64, preset="lite", device="cpu",
        adapt_steps=12, input_name="CT", adapted_steps=12, adapt_seed=3, slice_thickness=0.625,
        thickness_source="dicom")
    assert attributes["CTSliceSynthesis.adaptedSteps"] == "12"
    assert attributes["CTSliceSynthesis.adaptBudgetSteps"] == "12" and attributes["CTSliceSynthesis.adaptSeed"] == "3"
    assert attributes["CTSliceSynthesis.adaptReproducible"] == "true"
    capped = naming.provenance_attributes(
        scale=2, axis_name="K", model_id="m+adapted5", model_sha256=None, preset="lite", device="cpu",
        adapt_steps=100, input_name="CT", adapted_steps=5, adapt_seed=0, adapt_capped=True, adapt_seconds=2.5)
    assert (capped["CTSliceSynthesis.adaptCapSeconds"], capped["CTSliceSynthesis.adaptCapped"]) == ("2.5", "true")
    assert capped["CTSliceSynthesis.adaptReproducible"] == "false"
    assert attributes["CTSliceSynthesis.inputSliceThickness"] == "0.625"
    assert attributes["CTSliceSynthesis.inputSliceThicknessSource"] == "dicom"
    unknown = naming.provenance_attributes(
        scale=2, axis_name="K", model_id="m", model_sha256=None, preset="lite", device="cpu", adapt_steps=0,
        input_name="CT")
    assert unknown["CTSliceSynthesis.inputSliceThickness"] == ""
    assert unknown["CTSliceSynthesis.inputSliceThicknessSource"] == ""
