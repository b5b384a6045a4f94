import pytest

from flanforge.schemas.records import FIELD_NAMES, RECORD_FIELDS, arrow_schema, tf_feature_spec, validate_record


def test_arrow_schema_and_tf_feature_spec_are_in_step():
    import tensorflow as tf

    schema = arrow_schema()
    spec = tf_feature_spec()
    assert schema.names == list(FIELD_NAMES) == list(spec)
    for f in RECORD_FIELDS:
        arrow_type, feature = schema.field(f.name).type, spec[f.name]
        if f.kind == "string_list":
            assert str(arrow_type) == "list<item: string>" and isinstance(feature, tf.io.VarLenFeature)
        else:
            assert feature.dtype == (tf.int64 if f.kind == "int64" else tf.string)
            assert str(arrow_type) == ("int64" if f.kind == "int64" else "string")


def test_validate_record():
    good = {n: "x" for n in FIELD_NAMES} | {"options": ["a"], "answer_index": 0}
    validate_record(good)
    with pytest.raises(ValueError, match="answer_index"):
        validate_record(good | {"answer_index": "0"})
    with pytest.raises(ValueError, match="missing"):
        validate_record({k: v for k, v in good.items() if k != "inputs"})


def test_the_typed_record_is_the_record_fields_and_render_makes_exactly_it():
    from flanforge.beam_pipelines import render
    from flanforge.beam_pipelines.catalog import load_catalog
    from flanforge.schemas.records import FIELD_NAMES, Record

    assert tuple(Record.__annotations__) == FIELD_NAMES
    rte = load_catalog().tasks["rte"]
    outcome = render.render_row(render.CompiledTask(rte), rte.samples[0], split="train", example_id="e", applications=[render.Application(0)])
    assert tuple(outcome.records[0]) == FIELD_NAMES
