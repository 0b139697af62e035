"""plait._core.serialization: pickle first, cloudpickle when pickle refuses."""

import pickle
import threading

import pytest

from plait._core import serialization


def make_closure(n):
    return lambda x: x + n


def test_plain_objects_round_trip():
    obj = {"a": [1, 2.5, "x", b"y"], "b": (None, True)}
    assert serialization.loads(serialization.dumps(obj)) == obj


def test_lambda_and_closure_travel_by_value():
    f = serialization.loads(serialization.dumps(make_closure(3)))
    assert f(4) == 7
    g = serialization.loads(serialization.dumps(lambda: "hi"))
    assert g() == "hi"


def test_unpicklable_object_names_the_type():
    with pytest.raises(pickle.PicklingError, match="lock"):
        serialization.dumps(threading.Lock())


def test_the_refusal_is_also_the_error_the_standard_pickler_raises():
    with pytest.raises(TypeError) as refused:  # what pickle.dumps(lock) raises
        serialization.dumps(threading.Lock())
    assert isinstance(refused.value, pickle.PicklingError)
    back = pickle.loads(pickle.dumps(refused.value))  # it travels, as errors of tasks do
    assert type(back) is type(refused.value) and back.args == refused.value.args


def test_out_of_band_buffers_are_not_copied_into_the_payload():
    big = bytearray(1 << 20)
    payload, buffers = serialization.dumps_oob(pickle.PickleBuffer(big))
    assert len(payload) < 1000
    assert len(buffers) == 1
    back = serialization.loads(payload, buffers=[b.raw() for b in buffers])
    assert bytes(back) == bytes(big)


def test_out_of_band_with_fallback_collects_each_buffer_once():
    big = bytearray(b"z" * 4096)
    obj = (pickle.PickleBuffer(big), lambda: 1)
    payload, buffers = serialization.dumps_oob(obj)
    assert len(buffers) == 1
    buf, f = serialization.loads(payload, buffers=buffers)
    assert bytes(buf) == bytes(big) and f() == 1
