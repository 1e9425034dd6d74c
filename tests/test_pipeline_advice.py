"""OFB007: a complicated data pipeline before the model works is info; a warning only when augmentation is
measured to stop overfitting (tests/cases/ofb_cases.py plants that one and its plain twin)."""
import nndoctor
from cases.ofb_cases import _augmentation


def test_mild_augmentation_that_still_overfits_is_info_with_the_experiment():
    report = nndoctor.check(_augmentation(0.1), select={"OFB"}, progress=False)
    found = [f for f in report.findings if f.code == "OFB007"]
    assert len(found) == 1 and found[0].severity.value == "info"
    experiment = found[0].evidence["augmentation_experiment"]
    assert experiment["harm"] is False and experiment["fixed_steps"] > 0
    assert "random augmentation" in found[0].message
    assert "OFB007" not in report.codes()
