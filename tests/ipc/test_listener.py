"""Scenarios of ``Listener`` and ``Client``: authentication both ways, hostile and
broken clients, bad addresses; on the standard library and on plait alike where the
standard library behaves the same."""

from __future__ import annotations

import contextlib
import errno
import gc
import hmac
import os
import pickle
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait.ipc
from plait._core import framing
from plait.ipc import auth

pytestmark = pytest.mark.usefixtures("no_leaks")

KEY = b"the shared secret"
FAMILIES = {"unix": ("AF_UNIX", None), "tcp": ("AF_INET", ("127.0.0.1", 0))}


@contextlib.contextmanager
def serving(listener, handler):
    """Run ``handler(listener)`` in a thread; on exit, join it and re-raise its error."""
    errors: list[BaseException] = []

    def run():
        try:
            handler(listener)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield errors
    finally:
        thread.join(30)


def echo_one(listener) -> None:
    with listener.accept() as conn:
        conn.send(("echo", conn.recv()))


def accept_one(listener) -> None:
    listener.accept().close()


def accept_and_wait_for_hangup(listener) -> None:
    with listener.accept() as conn:
        conn.poll(20)


def good_client_round_trip(api, listener, authkey=KEY) -> None:
    with serving(listener, echo_one) as errors:
        with api.Client(listener.address, authkey=authkey) as conn:
            conn.send([1, 2, 3])
            assert conn.recv() == ("echo", [1, 2, 3])
    assert errors == []


# -- the same scenarios on multiprocessing and on plait -------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", FAMILIES)
def test_right_key_connects_and_carries_objects(api, family):
    fam, address = FAMILIES[family]
    with api.Listener(address, family=fam, authkey=KEY) as listener:
        good_client_round_trip(api, listener)
        assert listener.last_accepted is not None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_key_raises_authentication_error_on_both_ends(api, family):
    fam, address = FAMILIES[family]
    with api.Listener(address, family=fam, authkey=KEY) as listener:
        with serving(listener, accept_one) as errors:
            with pytest.raises(api.AuthenticationError):
                api.Client(listener.address, authkey=b"not the key")
        assert len(errors) == 1 and isinstance(errors[0], api.AuthenticationError)
        errors.clear()
        if api is not plait.ipc:
            gc.collect()  # the standard library leaves failed connections to the collector
        good_client_round_trip(api, listener)  # and the listener still serves


@pytest.mark.timeout(30)
def test_no_authkey_on_either_side(api):
    with api.Listener(("127.0.0.1", 0)) as listener:
        host, port = listener.address
        assert host == "127.0.0.1" and port > 0
        good_client_round_trip(api, listener, authkey=None)


def test_listener_rejects_a_non_bytes_authkey(api):
    with pytest.raises(TypeError):
        api.Listener(("127.0.0.1", 0), authkey="text")


def test_client_rejects_a_non_bytes_authkey_before_connecting():
    with pytest.raises(TypeError):
        plait.ipc.Client(("127.0.0.1", 9), authkey="text")


def test_unknown_family_raises_value_error(api):
    with pytest.raises(ValueError):
        api.Listener(family="AF_NOPE")


@pytest.mark.timeout(10)
def test_client_to_a_dead_tcp_address_fails_at_once(api):
    with api.Listener(("127.0.0.1", 0)) as listener:
        address = listener.address
    with pytest.raises(ConnectionRefusedError) as info:
        api.Client(address)
    if api is plait.ipc:
        assert str(address[1]) in str(info.value)


@pytest.mark.timeout(10)
def test_client_to_a_missing_unix_path_fails_at_once(api, tmp_path):
    path = str(tmp_path / "nobody-listens")
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)) as info:
        api.Client(path)
    if api is plait.ipc:
        assert path in str(info.value)


def test_port_in_use_raises_oserror(api):
    with api.Listener(("127.0.0.1", 0)) as listener:
        with pytest.raises(OSError) as info:
            api.Listener(listener.address)
        assert info.value.errno == errno.EADDRINUSE
        if api is plait.ipc:
            assert str(listener.address[1]) in str(info.value)


def test_unix_listener_removes_its_socket_file(api, tmp_path):
    path = str(tmp_path / "sock")
    with api.Listener(path) as listener:
        assert listener.address == path and os.path.exists(path)
    assert not os.path.exists(path)


@pytest.mark.timeout(30)
def test_a_forked_child_closing_its_copy_leaves_the_socket_file(api, tmp_path):
    path = str(tmp_path / "sock")
    with api.Listener(path, authkey=KEY) as listener:
        pid = os.fork()
        if pid == 0:
            try:
                listener.close()
            finally:
                os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert os.path.exists(path)
        good_client_round_trip(api, listener)
    assert not os.path.exists(path)


# -- plait only: hostile and broken clients -------------------------------------------


def raw_client(listener) -> socket.socket:
    """A plain socket connected to ``listener``, of the type its connections use."""
    if isinstance(listener.address, tuple):
        sock = socket.create_connection(listener.address)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(listener.address)
    return sock


@pytest.fixture(params=list(FAMILIES))
def guarded(request):
    """A plait listener with an authkey and a short handshake limit, per family."""
    fam, address = FAMILIES[request.param]
    with plait.ipc.Listener(address, family=fam, authkey=KEY, handshake_timeout=1) as listener:
        yield listener


@pytest.mark.timeout(120)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(min_size=1, max_size=600))
def test_garbage_from_a_client_fails_only_its_accept(guarded, garbage):
    with raw_client(guarded) as sock:
        try:
            sock.sendall(garbage)
        except OSError:
            pass  # too long for one record: the kernel refused it, as good as garbage
    with pytest.raises(plait.ipc.AuthenticationError):
        guarded.accept()


@pytest.mark.timeout(30)
def test_listener_serves_a_good_client_after_garbage(guarded):
    for garbage in (b"\xff" * 40, framing.HEADER.pack(framing.PLAIN, 0, 0, 0, 1 << 60)):
        with raw_client(guarded) as sock:
            sock.sendall(garbage)
        with pytest.raises(plait.ipc.AuthenticationError):
            guarded.accept()
    good_client_round_trip(plait.ipc, guarded)


SPRUNG: list[int] = []


def _spring() -> int:
    SPRUNG.append(os.getpid())
    return 0


class Trap:
    """Unpickling it calls ``_spring``: a stand-in for code an attacker wants run."""

    def __reduce__(self):
        return _spring, ()


def a_frame_with_an_out_of_band_buffer(obj) -> bytes:
    """A well-formed frame holding ``obj``'s pickle with one out-of-band buffer."""
    buffers = []
    payload = pickle.dumps(
        (obj, pickle.PickleBuffer(bytearray(8))), 5, buffer_callback=buffers.append
    )
    body = [bytes(b.raw()) for b in buffers]
    header = framing.HEADER.pack(framing.INLINE, 0, 0, len(body), len(payload))
    return header + struct.pack(f"<{len(body)}Q", *map(len, body)) + payload + b"".join(body)


@pytest.mark.timeout(30)
def test_a_client_without_the_key_gets_no_pickle_of_its_own_unpickled(guarded):
    SPRUNG.clear()
    with raw_client(guarded) as sock:
        with serving(guarded, accept_one) as errors:
            sock.recv(4096)  # the challenge; the answer is a pickle that calls _spring
            sock.sendall(a_frame_with_an_out_of_band_buffer(Trap()))
    assert len(errors) == 1 and isinstance(errors[0], plait.ipc.AuthenticationError)
    assert SPRUNG == []
    good_client_round_trip(plait.ipc, guarded)


@pytest.mark.timeout(30)
def test_a_failed_handshake_with_a_timeout_leaves_the_connection_without_one():
    a, b = plait.ipc.Pipe()
    with a, b:
        with pytest.raises(plait.ipc.AuthenticationError, match="no handshake"):
            auth.deliver_challenge(a, KEY, timeout=0.1)  # b never answers
        b.recv_bytes()  # the challenge
        b.send_bytes(b"late")
        assert a.recv_bytes() == b"late"  # no deadline left behind
        a.send_bytes(b"still usable")
        assert b.recv_bytes() == b"still usable"


@pytest.mark.timeout(30)
def test_enormous_announced_length_is_refused_without_allocating(guarded):
    with raw_client(guarded) as sock:
        sock.sendall(framing.HEADER.pack(framing.PLAIN, 0, 0, 0, (1 << 64) - 1))
        with pytest.raises(plait.ipc.AuthenticationError, match="length|large"):
            guarded.accept()
    good_client_round_trip(plait.ipc, guarded)


@pytest.mark.timeout(30)
def test_client_that_disconnects_mid_handshake(guarded):
    with raw_client(guarded) as sock:
        with serving(guarded, accept_one) as errors:
            sock.recv(4096)  # the challenge, then hang up
            sock.close()
    assert len(errors) == 1 and isinstance(errors[0], plait.ipc.AuthenticationError)
    good_client_round_trip(plait.ipc, guarded)


@pytest.mark.timeout(30)
def test_silent_client_cannot_hold_accept(guarded):
    with raw_client(guarded):
        with pytest.raises(plait.ipc.AuthenticationError, match="no handshake within"):
            guarded.accept()
    good_client_round_trip(plait.ipc, guarded)


@pytest.mark.timeout(30)
def test_client_with_a_key_against_a_silent_server_times_out():
    with plait.ipc.Listener(("127.0.0.1", 0)) as listener:  # no authkey: sends no challenge
        with serving(listener, accept_and_wait_for_hangup):
            with pytest.raises(plait.ipc.AuthenticationError, match="no handshake"):
                plait.ipc.Client(listener.address, authkey=KEY, timeout=0.5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("role", [b"server:", b""])
def test_a_digest_made_for_another_role_is_rejected(guarded, role):
    """Even with the key, an answer computed for the server's role (as a reflected
    challenge would yield) or for no role does not authenticate a client."""
    with raw_client(guarded) as sock:
        client = plait.ipc.Connection(sock.detach())
        with serving(guarded, accept_one) as errors, client:
            nonce = client.recv_bytes()[len(auth.CHALLENGE) :]
            client.send_bytes(hmac.new(KEY, role + nonce, "sha256").digest())
            assert client.recv_bytes() == auth.FAILURE
    assert len(errors) == 1 and isinstance(errors[0], plait.ipc.AuthenticationError)


@pytest.mark.timeout(10)
def test_accept_timeout():
    with plait.ipc.Listener() as listener:
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.01)


def test_abstract_unix_address():
    name = f"\0plait-test-{os.getpid()}"
    with plait.ipc.Listener(name, authkey=KEY) as listener:
        good_client_round_trip(plait.ipc, listener)


@pytest.mark.timeout(30)
def test_unix_listener_connections_carry_connections():
    with plait.ipc.Listener() as listener:
        with serving(listener, echo_one) as errors:
            with plait.ipc.Client(listener.address) as conn:
                a, b = plait.ipc.Pipe()
                with a, b:
                    conn.send(a)
                    echoed = conn.recv()[1]
                    with echoed:
                        echoed.send("hi")
                        assert b.recv() == "hi"
        assert errors == []


def test_authentication_error_is_a_process_error():
    assert issubclass(plait.ipc.AuthenticationError, plait.ipc.ProcessError)
    assert issubclass(plait.ipc.BufferTooShort, plait.ipc.ProcessError)


def test_client_to_a_stream_unix_socket_says_it_may_not_be_a_plait_listener(tmp_path):
    path = str(tmp_path / "stream")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)
        other.listen(1)
        with pytest.raises(OSError, match="not a plait Listener"):
            plait.ipc.Client(path)
